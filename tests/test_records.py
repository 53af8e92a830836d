import json

from datareduce import records


def test_epoch_records_get_cumulative_time_and_resume_drops_redone_epochs(tmp_path):
    log = records.RunLog(tmp_path)
    log.write("run", {"args": {}})
    for e, t in enumerate([1.5, 2.0, 2.5]):
        log.write("epoch", {"epoch": e, "train_time_s": t, "top1": 10.0 * e})
    assert [r["cumulative_train_time_s"] for r in log.records("epoch")] == [1.5, 3.5, 6.0]
    # resume at epoch 2: the record of epoch 2 is dropped and the running sum continues from epoch 1
    again = records.RunLog(tmp_path, resume_epoch=2)
    assert [r["epoch"] for r in again.records("epoch")] == [0, 1]
    again.write("epoch", {"epoch": 2, "train_time_s": 1.0, "top1": 25.0})
    assert again.records("epoch")[-1]["cumulative_train_time_s"] == 4.5
    s = records.summarize(again.records("epoch"))
    assert s["epochs"] == 3 and s["train_time_s"] == 4.5 and s["final_top1"] == 25.0 and s["best_top1"] == 25.0


def test_torn_last_line_is_ignored(tmp_path):
    p = tmp_path / records.LOG_NAME
    p.write_text(json.dumps({"type": "epoch", "epoch": 0}) + "\n{\"type\": \"ep")
    assert records.read(p) == [{"type": "epoch", "epoch": 0}]
