"""Say what ran: the method's name (the trainers' summary, `datareduce report`) and the `datareduce:` line both
trainers print at start-up, with the settings that take effect."""
import pytest

from datareduce.config import AdonisConfig, IDSConfig, OfflineConfig, ReduceConfig, RS2Config
from datareduce.describe import method_name, reduce_line
from datareduce.report.runs import detect_method, load_run

CONFIGS = {
    "full": ReduceConfig(),
    "adonis": ReduceConfig(adonis=AdonisConfig(eta=3)),
    "ids": ReduceConfig(ids=IDSConfig(alpha=0.5)),
    "ids+adonis": ReduceConfig(ids=IDSConfig(alpha=0.5), adonis=AdonisConfig()),
    "rpd+adonis": ReduceConfig(method="rpd", adonis=AdonisConfig()),
    "sb": ReduceConfig(method="sb"),
    "infobatch": ReduceConfig(method="infobatch"),
    "ids+sb": ReduceConfig(method="sb", ids=IDSConfig()),
    "ssp": ReduceConfig(method="ssp", offline=OfflineConfig(alpha=0.6)),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_method_name_is_what_the_report_reads_from_the_run_record(name):
    cfg = CONFIGS[name]
    assert method_name(cfg) == name
    assert detect_method({"reduce": cfg.describe()}, None, [], None) == (name, "run record (reduce)")


def test_reduce_line_names_the_method_and_its_effective_settings():
    assert reduce_line(ReduceConfig()) == "datareduce: full data (no data reduction)"
    line = reduce_line(ReduceConfig(adonis=AdonisConfig(eta=3)), rho=32)
    assert line == "datareduce: ADONIS η=3 θ=0.12 α=0.3 σ=1 ω=0 l=512 bins=sturges ρ=32 (seed 0)"
    line = reduce_line(ReduceConfig(adonis=AdonisConfig(eta=3, rho=64, balance=True, floor=0.1), seed=5), rho=32)
    assert "ρ=64" in line and "(balance, floor=0.1)" in line and line.endswith("(seed 5)")
    line = reduce_line(ReduceConfig(ids=IDSConfig(alpha=0.8, gamma=120), adonis=AdonisConfig()), rho=128)
    assert line.startswith("datareduce: IDS α=0.8 easy → hard from epoch 120, extractor efficientnet-lite0 at 96 px "
                           "+ ADONIS η=1 ")
    assert reduce_line(ReduceConfig(ids=IDSConfig(manifest="m.json"))) == "datareduce: IDS subset from m.json (seed 0)"
    assert reduce_line(ReduceConfig(method="sb")) == "datareduce: Selective Backprop β=2 history 1024 η=1 (seed 0)"
    assert reduce_line(ReduceConfig(method="stale-sb")).startswith("datareduce: Stale-SB β=2 history 1024 η=2")
    assert reduce_line(ReduceConfig(method="rpd", offline=OfflineConfig(0.5))) == "datareduce: RPD α=0.5 (seed 0)"
    assert reduce_line(ReduceConfig(method="infobatch")) == "datareduce: InfoBatch r=0.5 δ=0.875 (seed 0)"
    assert reduce_line(ReduceConfig(method="rs2", rs2=RS2Config(0.3))) == \
        "datareduce: RS2 0.3 of the training set per epoch (seed 0)"
    assert "ρ=the batch size" in reduce_line(ReduceConfig(adonis=AdonisConfig()))


@pytest.mark.slow
def test_classify_says_what_runs_and_its_summary_names_it(tmp_path):
    """RPD + ADONIS on the embedded digits: the first line names both with their settings, the flag dump does not
    contradict it, and the summary (and so `datareduce report`) says rpd+adonis, not just adonis."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(repo / "trainers" / "classify.py"), "--reduce", "rpd",
                           "--reduce-alpha", "0.5", "--adonis-eta", "2", "--epochs", "1", "--output-dir", str(out),
                           "--print-freq", "1000"], capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(Path.home())})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "datareduce: RPD α=0.5 + ADONIS η=2 θ=0.12 α=0.3 σ=1 ω=0 l=512 bins=sturges ρ=32 (seed 0)"
    dump = next(line for line in lines if line.startswith("Namespace("))
    assert "adonis=" not in dump and "ids=" not in dump and "reduce=" not in dump and "batch_size=32" in dump
    assert "Start training (rpd+adonis, 1 process(es), cpu)" in lines
    recs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert recs[-1]["type"] == "summary" and recs[-1]["method"] == "rpd+adonis"
    assert load_run(out).method == "rpd+adonis"


def test_the_start_up_line_names_the_prune_mode_and_drops_the_unused_alpha():
    from datareduce.config import AdonisConfig, ReduceConfig
    from datareduce.describe import reduce_line

    line = reduce_line(ReduceConfig(adonis=AdonisConfig.from_mode("prune", epochs=16)), rho=64)
    assert line.startswith("datareduce: ADONIS, prune mode: η=3 ") and "α=" not in line  # prune uses no α
    assert "prune=0.5" in line and "anneal=2" in line and "mode=" not in line
    assert "α=0.3" in reduce_line(ReduceConfig(adonis=AdonisConfig(eta=3)), rho=64)
