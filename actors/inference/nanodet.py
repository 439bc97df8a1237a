"""NanoDet-416: an 80-class COCO detector run by onnxruntime, behind the same interface as ``detectors.py``'s.

A ``NanodetDetector`` owns one onnxruntime session (its own threads and memory: one per inference actor, never
shared). Like every detector it is created, used and closed by one inference actor on that actor's thread;
``detect`` may raise, and the inference actor then counts the frame as failed and fails itself, so the supervisor
restarts it with a fresh detector. Loading raises ``StartError`` naming ``detector.coco_model``.

The model is ``actors/assets/nanodet-coco-416.onnx`` (provenance and licence in ``actors/assets/NOTICE.md``):

- Input ``[1, 3, 416, 416]`` float32, BGR, ``(x - MEAN) / STD`` per channel (NanoDet's training normalisation;
  the publisher's TF.js code feeds RGB / 255 instead, which found 15% fewer people at 0.5 or more on the 51 clip
  frames measured). The frame is *stretched* to 416x416 (no letterbox), as the publisher's code does and the models
  README measured; boxes are scaled back by ``w / 416`` and ``h / 416`` separately. On clip frame 100 (768x576)
  stretching finds 6 people at 0.62-0.79, the van as a truck (0.58) and the car (0.50); letterboxing (the picture
  in 416x312) found the same 6 people at 0.61-0.75 but called the van a car, a quarter of its input padding.
- Outputs, per stride 8, 16, 32 (N = (416 / stride)^2 cells, row by row): class scores ``[1, N, 80]`` (already
  sigmoid) and box distances ``[1, N, 44]``: 4 sides (left, top, right, bottom) x 11 bins, softmax over the bins,
  expectation x stride = distance from the cell centre ``((col + 0.5) * stride, (row + 0.5) * stride)``. The
  outputs are told apart by shape, not by their tf2onnx names (``Identity_*:0``).
- Every (cell, class) pair scoring at least ``threshold`` is a candidate (a cell may be a person and a handbag),
  then class-aware NMS (``cv2.dnn.NMSBoxesBatched``) on boxes in the input image's pixels, best 100 kept. So one
  object can be reported under two classes: the clip's car is also a truck at 0.36-0.38, same box.
- At the default threshold (0.35) the model also reports steady mistakes on the clip, frame after frame: litter on
  the grass as a bird (0.36-0.44) and a sports ball (0.38-0.47), a traffic cone as a person or a traffic light
  (0.35-0.40). ``labels`` keeps only the classes a task needs.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from typing import Any

import cv2
import numpy as np

from ..core.config import resolve_asset
from ..core.messages import Detection
from ..core.supervision import StartError

#: The COCO 2017 category names in the model's class order (index 0 = person, 24 backpack, 26 handbag, 28 suitcase).
COCO_LABELS: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)

SETTING = "detector.coco_model"
"""The conf key that load errors name."""

INPUT_PX = 416
STRIDES = (8, 16, 32)
BINS = 11  # distance bins per side: 0..10 strides
MEAN = np.array([103.53, 116.28, 123.675], np.float32)  # B, G, R
STD = np.array([57.375, 57.12, 58.395], np.float32)
MAX_CANDIDATES = 1000  # best (cell, class) pairs that enter NMS (only reached with a very low threshold)
MAX_DETECTIONS = 100  # kept after NMS, best first


def _centres() -> tuple[np.ndarray, np.ndarray]:
    """Every cell of the three strides in output order: ``[3549, 2]`` centres (x, y) and ``[3549]`` strides, px."""
    centres, strides = [], []
    for stride in STRIDES:
        side = INPUT_PX // stride
        rows, cols = np.divmod(np.arange(side * side), side)
        centres.append(np.column_stack(((cols + 0.5) * stride, (rows + 0.5) * stride)))
        strides.append(np.full(side * side, stride))
    return np.concatenate(centres).astype(np.float32), np.concatenate(strides).astype(np.float32)


_CENTRES, _CELL_STRIDES = _centres()
_MEAN_SCALAR = tuple(float(m) for m in MEAN)
_INV_STD = (1 / STD).reshape(1, 3, 1, 1)
_BIN_VALUES = np.arange(BINS, dtype=np.float32)


class NanodetDetector:
    """NanoDet-416 on 80 COCO classes. ``threshold``: least class score kept (0..1); ``nms_iou``: boxes of one class
    overlapping more than this are one object; ``labels``: the COCO names to report (``COCO_LABELS``), None for all;
    ``threads``: onnxruntime's intra-op threads for this detector's session."""

    name = "nanodet-coco/onnxruntime"  # alerts carry it as ``backend``

    def __init__(self, model: str, *, threshold: float = 0.35, nms_iou: float = 0.6,
                 labels: Collection[str] | None = None, threads: int = 1) -> None:
        """Raises ``ValueError`` for an out-of-range argument or a name not in ``COCO_LABELS`` (config checks these
        first), ``StartError`` naming ``detector.coco_model`` when onnxruntime is missing or the file cannot be
        loaded as this model. Loads the model and runs one warm-up inference (the first is the slowest)."""
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
        if not 0.0 < nms_iou <= 1.0:
            raise ValueError(f"nms_iou must be in (0, 1], got {nms_iou!r}")
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads!r}")
        self._threshold = float(threshold)
        self._nms_iou = float(nms_iou)
        self._classes = _class_ids(labels)  # None: all 80
        self._session: Any = _open_session(resolve_asset(model), threads)
        self._input = self._session.get_inputs()[0].name
        self._outputs = _output_order(self._session)
        self.detect(np.zeros((INPUT_PX, INPUT_PX, 3), np.uint8))

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Detections in ``image`` (BGR, HxWx3 uint8), best first; boxes in its pixels, within it."""
        assert self._session is not None, "detect() after close()"
        h, w = image.shape[:2]
        resized = cv2.resize(image, (INPUT_PX, INPUT_PX), interpolation=cv2.INTER_LINEAR)
        # HWC uint8 -> NCHW float32 minus the mean in one C++ pass, then / STD in place: 1.7 ms, half of numpy's.
        blob = cv2.dnn.blobFromImage(resized, 1.0, None, _MEAN_SCALAR, swapRB=False, crop=False)
        blob *= _INV_STD
        scores, distances = self._forward(blob)
        return self._decode(scores, distances, w, h)

    def close(self) -> None:
        self._session = None  # onnxruntime frees the session (threads, memory) with its last reference

    def _forward(self, blob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``[3549, 80]`` class scores and ``[3549, 44]`` distances, strides 8, 16, 32 one after the other."""
        out = self._session.run(self._outputs, {self._input: blob})
        return np.concatenate([o[0] for o in out[0::2]]), np.concatenate([o[0] for o in out[1::2]])

    def _decode(self, scores: np.ndarray, distances: np.ndarray, w: int, h: int) -> list[Detection]:
        if self._classes is not None:
            scores = scores[:, self._classes]
        cells, columns = np.nonzero(scores >= self._threshold)
        if cells.size == 0:
            return []
        cand_scores = scores[cells, columns]
        if cells.size > MAX_CANDIDATES:
            best = np.argpartition(-cand_scores, MAX_CANDIDATES)[:MAX_CANDIDATES]
            cells, columns, cand_scores = cells[best], columns[best], cand_scores[best]
        classes = columns if self._classes is None else self._classes[columns]
        # Softmax over the bins of each side, then the expected bin, in strides -> pixels of the 416x416 input.
        logits = distances[cells].reshape(-1, 4, BINS)
        e = np.exp(logits - logits.max(axis=2, keepdims=True))
        sides = (e @ _BIN_VALUES) / e.sum(axis=2) * _CELL_STRIDES[cells, np.newaxis]  # [n, 4]: l, t, r, b
        centre = _CENTRES[cells]
        boxes = np.concatenate((centre - sides[:, :2], centre + sides[:, 2:]), axis=1)
        boxes *= np.array([w, h, w, h], np.float32) / INPUT_PX  # stretched back to the image
        np.clip(boxes, 0, [w, h, w, h], out=boxes)
        xywh = np.concatenate((boxes[:, :2], boxes[:, 2:] - boxes[:, :2]), axis=1)
        keep = cv2.dnn.NMSBoxesBatched(xywh, cand_scores, classes.astype(np.int32), self._threshold,
                                       self._nms_iou)
        found = []
        for i in np.asarray(keep, dtype=np.intp).reshape(-1)[:MAX_DETECTIONS]:  # sorted by score, best first
            x1, y1, x2, y2 = (int(v) for v in np.rint(boxes[i]))
            if x2 > x1 and y2 > y1:
                found.append(Detection(label=COCO_LABELS[classes[i]], score=round(float(cand_scores[i]), 4),
                                       box=(x1, y1, x2, y2)))
        return found


def _class_ids(labels: Collection[str] | None) -> np.ndarray | None:
    if labels is None:
        return None
    if isinstance(labels, str):
        raise ValueError(f"labels must be a collection of COCO names, not the string {labels!r}")
    unknown = sorted(set(labels) - set(COCO_LABELS))
    if unknown:
        raise ValueError(f"not COCO class names: {', '.join(map(repr, unknown))} (the 80 names are "
                         "nanodet.COCO_LABELS, e.g. 'person', 'car', 'handbag')")
    if not labels:
        raise ValueError("labels is empty: nothing would ever be detected (None reports all 80 classes)")
    return np.array(sorted(COCO_LABELS.index(name) for name in set(labels)), np.intp)


def _open_session(path: str, threads: int) -> Any:
    """One onnxruntime CPU session: ``threads`` intra-op threads, one inter-op thread, sequential execution, and
    idle pool threads that sleep instead of spinning. Measured here (onnxruntime 1.32, 2 cores, one frame every
    ~85 ms): with ``threads = 2`` spinning took 115-160 ms of CPU per frame against 59-60 ms without, for the same
    33-35 ms latency; the spinning steals the cores decoding needs. With ``threads = 1`` there is no pool (the
    caller's thread runs the graph), so it changes nothing. ``run`` releases the GIL: two detectors with one
    thread each on two actors give 1.8x the frames/s of one, more than one detector with two threads."""
    if not os.path.isfile(path):
        raise StartError(SETTING, f"no such file: {path}")
    try:
        import onnxruntime as ort  # only when this backend is used (0.2 s)
    except ImportError as exc:
        raise StartError(SETTING, f"onnxruntime is not installed ({exc}); pip install onnxruntime") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: its warnings are about graph optimisations, not our frames
    try:
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001  (onnxruntime's own exception types: a report, last line says why)
        reason = [line.strip() for line in str(exc).splitlines() if line.strip()][-1:] or [type(exc).__name__]
        raise StartError(SETTING, f"onnxruntime cannot load {path!r}: {reason[0]}") from None


def _output_order(session: Any) -> list[str]:
    """The output names as (scores, distances) for stride 8, 16, 32; ``StartError`` if the shapes are not
    NanoDet-416's."""
    by_shape = {tuple(o.shape): o.name for o in session.get_outputs()}
    names = []
    for stride in STRIDES:
        cells = (INPUT_PX // stride) ** 2
        for width in (len(COCO_LABELS), 4 * BINS):
            name = by_shape.get((1, cells, width))
            if name is None:
                raise StartError(SETTING, f"not a NanoDet-416 COCO model: no output of shape [1, {cells}, "
                                          f"{width}] (outputs: {sorted(by_shape)})")
            names.append(name)
    inputs = session.get_inputs()
    if len(inputs) != 1 or tuple(inputs[0].shape) != (1, 3, INPUT_PX, INPUT_PX):
        raise StartError(SETTING, f"not a NanoDet-416 COCO model: input {[(i.name, i.shape) for i in inputs]}, "
                                  f"expected one [1, 3, {INPUT_PX}, {INPUT_PX}]")
    return names
