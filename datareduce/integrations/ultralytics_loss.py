"""One detection loss per image, the score ADONIS ranks YOLO images by.

Ultralytics' ``v8DetectionLoss`` sums box (CIoU), cls (BCE) and DFL terms over the whole batch and divides them by
the batch-wide target-score sum. Here the same assigner runs once on the same predictions, each term is summed per
image (one ``index_add_`` over the foreground anchors, no loop over images) and each image is divided by its own
target-score sum. The per-image numerators summed over the batch give back the stock loss exactly:
``stock = batch_size * numerators.sum(0) / max(score_sums.sum(), 1)``.
"""
from __future__ import annotations

import torch
from ultralytics.utils.loss import v8DetectionLoss
from ultralytics.utils.metrics import bbox_iou
from ultralytics.utils.tal import bbox2dist, make_anchors


class PerImageDetectionLoss:
    """Per-image box/cls/DFL loss of a YOLO detection model, with its own criterion's assigner and gains.

    ``model`` is the (unwrapped) ``DetectionModel`` whose ``args`` carry the ``box``, ``cls`` and ``dfl`` gains.
    Call it with the model's training outputs and the preprocessed batch to get a ``(batch_size,)`` tensor.
    """

    def __init__(self, model: torch.nn.Module):
        if getattr(model, "criterion", None) is None:
            model.criterion = model.init_criterion()  # the one model.loss() would build: same hyp, class weights
        self.criterion = model.criterion
        if type(self.criterion) is not v8DetectionLoss:
            raise TypeError(f"per-image loss supports v8DetectionLoss (YOLOv5/v8/11 detect heads), "
                            f"not {type(self.criterion).__name__}")
        if not self.criterion.use_dfl:
            raise NotImplementedError("per-image loss needs a DFL head (reg_max > 1)")

    def terms(self, preds, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image loss numerators ``(B, 3)`` (box, cls, dfl, gains applied) and target-score sums ``(B,)``."""
        c = self.criterion
        preds = c.parse_output(preds)
        pred_distri = preds["boxes"].permute(0, 2, 1).contiguous()
        pred_scores = preds["scores"].permute(0, 2, 1).contiguous()
        anchor_points, stride_tensor = make_anchors(preds["feats"], c.stride, 0.5)
        dtype, batch_size = pred_scores.dtype, pred_scores.shape[0]
        imgsz = torch.tensor(preds["feats"][0].shape[2:], device=c.device, dtype=dtype) * c.stride[0]

        targets = torch.cat((batch["batch_idx"].view(-1, 1), batch["cls"].view(-1, 1), batch["bboxes"]), 1)
        targets = c.preprocess(targets.to(c.device), batch_size, scale_tensor=imgsz[[1, 0, 1, 0]])
        gt_labels, gt_bboxes = targets.split((1, 4), 2)
        mask_gt = gt_bboxes.sum(2, keepdim=True).gt_(0.0)
        pred_bboxes = c.bbox_decode(anchor_points, pred_distri)
        _, target_bboxes, target_scores, fg_mask, _ = c.assigner(
            pred_scores.detach().sigmoid(),
            (pred_bboxes.detach() * stride_tensor).type(gt_bboxes.dtype),
            anchor_points * stride_tensor,
            gt_labels,
            gt_bboxes,
            mask_gt,
        )

        bce = c.bce(pred_scores, target_scores.to(dtype))
        if c.class_weights is not None:
            bce = bce * c.class_weights
        cls = bce.sum((1, 2))

        image, anchor = fg_mask.nonzero(as_tuple=True)  # foreground anchors and the image each belongs to
        weight = target_scores[image, anchor].sum(-1)
        target_grid = target_bboxes[image, anchor] / stride_tensor[anchor]
        iou = bbox_iou(pred_bboxes[image, anchor], target_grid, xywh=False, CIoU=True).squeeze(-1)
        target_ltrb = bbox2dist(anchor_points[anchor], target_grid, c.reg_max - 1)
        dfl = c.bbox_loss.dfl_loss(pred_distri[image, anchor].view(-1, c.reg_max), target_ltrb).squeeze(-1)
        per_image = torch.zeros(2, batch_size, device=cls.device, dtype=cls.dtype)
        per_image.index_add_(1, image, torch.stack(((1.0 - iou) * weight, dfl * weight)).to(cls.dtype))

        gains = torch.tensor([c.hyp.box, c.hyp.cls, c.hyp.dfl], device=cls.device, dtype=cls.dtype)
        numerators = torch.stack((per_image[0], cls, per_image[1]), 1) * gains
        return numerators, target_scores.sum((1, 2))

    def __call__(self, preds, batch: dict) -> torch.Tensor:
        """One scalar per image: its summed loss terms over its own target-score sum (at least 1, as upstream)."""
        numerators, score_sums = self.terms(preds, batch)
        return numerators.sum(1) / score_sums.clamp(min=1)
