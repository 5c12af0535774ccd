"""RetinaFace: priors, decoding on real photos through ONNX Runtime, the PyTorch net and its export."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from engines.backends.base import Backend
from engines.backends.onnxruntime_backend import OnnxRuntimeBackend
from engines.detectors.retinaface import RetinaFace, prior_boxes
from engines.errors import ModelFileError
from engines.nms import iou_matrix

REPO = Path(__file__).resolve().parents[3]
#: faces a person counts in each scene photo (every photo in people/ holds exactly one)
SCENE_FACES = {
    "two_people.jpg": 2,
    "six_people.jpg": 6,
    "obama-240p.jpg": 1,
    "obama-480p.jpg": 1,
    "obama-720p.jpg": 1,
    "obama-1080p.jpg": 1,
}


def expected_counts(media_dir: Path) -> dict[str, int]:
    counts = {str(p.relative_to(media_dir)): 1 for p in sorted(media_dir.glob("people/*/*"))}
    counts.update({f"scenes/{name}": n for name, n in SCENE_FACES.items()})
    assert len(counts) == 17
    return counts


def read(media_dir: Path, rel: str) -> np.ndarray:
    img = cv2.imread(str(media_dir / rel), cv2.IMREAD_COLOR)
    assert img is not None, rel
    return img


def check_geometry(dets, image: np.ndarray, tol: float = 3.0) -> None:
    """Boxes inside the image; landmarks inside their box (give or take ``tol`` px + 10% of the face:
    a face cut by the image edge has a clipped box but its mouth may lie beyond it); eyes left/right
    of each other and above the mouth; scores sorted."""
    h, w = image.shape[:2]
    b, lm = dets.boxes, dets.landmarks
    tol = tol + 0.1 * (b[:, None, 2] - b[:, None, 0])
    assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all()
    assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
    assert (lm[..., 0] >= b[:, None, 0] - tol).all() and (lm[..., 0] <= b[:, None, 2] + tol).all()
    assert (lm[..., 1] >= b[:, None, 1] - tol).all() and (lm[..., 1] <= b[:, None, 3] + tol).all()
    eyes_y, mouth_y = lm[:, :2, 1].max(1), lm[:, 3:, 1].min(1)
    assert (eyes_y < mouth_y).all()
    assert (lm[:, 0, 0] < lm[:, 1, 0]).all() and (lm[:, 3, 0] < lm[:, 4, 0]).all()
    assert (np.diff(dets.scores) <= 0).all()


@pytest.fixture(scope="module")
def onnx_path(checkpoint_dir: Path) -> Path:
    return checkpoint_dir / "retinaface_mnet025.onnx"


@pytest.fixture(scope="module")
def backend(onnx_path: Path) -> OnnxRuntimeBackend:
    return OnnxRuntimeBackend(onnx_path, device="cpu")


@pytest.fixture(scope="module")
def detector(backend) -> RetinaFace:
    return RetinaFace(backend)


class CountingBackend(Backend):
    """Wraps a backend, caps its batch and counts calls: checks the adapter's chunking."""

    name = "counting"

    def __init__(self, inner: Backend, max_batch: int | None) -> None:
        self.inner, self.max_batch, self.calls = inner, max_batch, []

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        self.calls.append(len(batch))
        assert self.max_batch is None or len(batch) <= self.max_batch
        return self.inner.run(batch)


# -- priors -----------------------------------------------------------------------------------

@pytest.mark.parametrize("hw", [(640, 640), (480, 736), (928, 1600), (32, 64)])
def test_priors_match_the_network_output_layout(backend, hw):
    centres, sizes = prior_boxes(*hw)
    loc, conf, landms = backend.run(np.zeros((1, 3, *hw), np.float32))
    assert len(centres) == len(sizes) == loc.shape[1] == conf.shape[1] == landms.shape[1]
    h, w = hw
    n8 = (h // 8) * (w // 8) * 2
    # first anchors: centre of the top-left stride-8 cell, sizes 16 then 32; then the next column
    np.testing.assert_array_equal(centres[:3], [[4, 4], [4, 4], [12, 4]])
    np.testing.assert_array_equal(sizes[:3, 0], [16, 32, 16])
    # the stride-32 level ends at the bottom-right cell with the 512 anchor
    np.testing.assert_array_equal(centres[-1], [w - 16, h - 16])
    assert sizes[-1].tolist() == [512, 512] and sizes[n8].tolist() == [64, 64]


def test_priors_are_cached_per_size(detector):
    a = detector.priors(640, 640)
    assert detector.priors(640, 640) is a
    assert detector.priors(480, 640)[0].shape[0] != a[0].shape[0]


def test_decoding_a_synthetic_output():
    """One confident prior with known offsets decodes to the box the variances imply."""

    class Fake(Backend):
        name = "fake"

        def run(self, batch):
            n, _, h, w = batch.shape
            centres, _ = prior_boxes(h, w)
            loc = np.zeros((n, len(centres), 4), np.float32)
            conf = np.tile(np.array([1.0, 0.0], np.float32), (n, len(centres), 1))
            landms = np.zeros((n, len(centres), 10), np.float32)
            k = int(np.flatnonzero((centres[:, 0] == 100) & (centres[:, 1] == 52))[1])  # size-32 anchor
            conf[:, k] = [0.1, 0.9]
            loc[:, k] = [1.0, -1.0, np.log(2) / 0.2, 0.0]  # shift by 0.1*32, double the width
            landms[:, k] = np.arange(10) / 10
            return [loc, conf, landms]

    det = RetinaFace(Fake(), input_size=(320, 320))
    image = np.zeros((160, 160, 3), np.uint8)  # letterboxed at scale 2
    (d,) = det.detect_batch([image])
    assert len(d) == 1 and d.scores[0] == pytest.approx(0.9)
    cx, cy = (100 + 3.2) / 2, (52 - 3.2) / 2
    np.testing.assert_allclose(d.boxes[0], [cx - 32 / 2, cy - 16 / 2, cx + 32 / 2, cy + 16 / 2], atol=1e-4)
    off = (np.arange(10) / 10).reshape(5, 2) * 3.2 / 2
    np.testing.assert_allclose(d.landmarks[0], np.array([100 / 2, 52 / 2]) + off, atol=1e-4)


# -- real photos ------------------------------------------------------------------------------

def test_face_counts_on_real_photos(detector, media_dir):
    want = expected_counts(media_dir)
    got = {}
    for rel in want:
        image = read(media_dir, rel)
        dets = detector.detect(image)
        got[rel] = len(dets)
        check_geometry(dets, image)
    assert got == want


def test_crowd_finds_many_small_faces_at_native_size(backend, media_dir):
    """crowd.jpg (1600x898): measured 401 faces at native size and 89 at 640x640 (ORT 1.x, CPU).
    Bounds leave ~25% margin; the native run must find far more than the downscaled one."""
    image = read(media_dir, "scenes/crowd.jpg")
    native = RetinaFace(backend, input_size=None).detect(image)
    small = RetinaFace(backend, input_size=(640, 640)).detect(image)
    assert len(native) >= 300
    assert len(small) >= 60
    assert len(native) > 3 * len(small)
    widths = native.boxes[:, 2] - native.boxes[:, 0]
    assert np.median(widths) < 30  # most of them are tiny
    big = native[widths > 20]  # landmarks on tiny faces are too coarse for the geometry check
    check_geometry(big, image)


def test_same_photo_at_four_resolutions_gives_the_same_box(detector, media_dir):
    """Back-mapping to original pixels: each resolution's box, rescaled to 1080p, coincides."""
    ref = detector.detect(read(media_dir, "scenes/obama-1080p.jpg"))
    for rel in ("obama-240p.jpg", "obama-480p.jpg", "obama-720p.jpg"):
        image = read(media_dir, f"scenes/{rel}")
        d = detector.detect(image)
        s = 1080 / image.shape[0]
        assert iou_matrix(d.boxes * s, ref.boxes)[0, 0] > 0.85, rel
        assert np.abs(d.landmarks * s - ref.landmarks).max() < 0.05 * (ref.boxes[0, 2] - ref.boxes[0, 0])


def test_batch_equals_single_and_respects_max_batch(backend, media_dir):
    images = [read(media_dir, f"scenes/{n}") for n in ("two_people.jpg", "six_people.jpg", "obama-480p.jpg")]
    single = [RetinaFace(backend).detect(im) for im in images]
    capped = CountingBackend(backend, max_batch=2)
    batched = RetinaFace(capped).detect_batch(images)
    assert capped.calls == [2, 1]
    for a, b in zip(single, batched):
        assert len(a) == len(b)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-2)
        np.testing.assert_allclose(a.landmarks, b.landmarks, atol=1e-2)
    assert RetinaFace(backend).detect_batch([]) == []


def test_max_faces_and_threshold(backend, media_dir):
    image = read(media_dir, "scenes/six_people.jpg")
    full = RetinaFace(backend).detect(image)
    top3 = RetinaFace(backend, max_faces=3).detect(image)
    np.testing.assert_allclose(top3.boxes, full.boxes[:3])
    strict = RetinaFace(backend, score_threshold=float(full.scores[2])).detect(image)
    assert len(strict) >= 3 and (strict.scores >= full.scores[2]).all()
    assert len(RetinaFace(backend, score_threshold=1.01).detect(image)) == 0


def test_input_size_validation(backend):
    with pytest.raises(ValueError):
        RetinaFace(backend, input_size=(600, 640))
    assert RetinaFace(backend, input_size=320).input_size == (320, 320)
    with pytest.raises(ValueError):
        RetinaFace(backend).preprocess([np.zeros((10, 10), np.uint8)])


def test_preprocess_is_mean_subtracted_bgr_with_neutral_padding(detector):
    image = np.zeros((100, 200, 3), np.uint8)
    image[:] = (10, 20, 30)
    batch, (info,) = detector.preprocess([image])
    assert batch.shape == (1, 3, 640, 640) and batch.dtype == np.float32
    np.testing.assert_allclose(batch[0, :, 0, 0], [10 - 104, 20 - 117, 30 - 123])
    assert not batch[0, :, 400:].any()  # padding is the mean: zero after subtraction
    assert info.scale == pytest.approx(3.2)


@pytest.mark.timeout(120)
def test_adapter_runs_without_torch(onnx_path, media_dir):
    """The CPU ONNX path must not need PyTorch: block its import and detect in a fresh process."""
    photo = media_dir / "scenes/two_people.jpg"
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import cv2\n"
        "from engines.backends.onnxruntime_backend import OnnxRuntimeBackend\n"
        "from engines.detectors.retinaface import RetinaFace\n"
        "from engines.detectors.scrfd import SCRFD\n"
        f"d = RetinaFace(OnnxRuntimeBackend({str(onnx_path)!r})).detect(cv2.imread({str(photo)!r}))\n"
        "print(len(d))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=100)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "2"


# -- the PyTorch network and its export --------------------------------------------------------

@pytest.fixture(scope="module")
def torch_net(checkpoint_dir):
    pytest.importorskip("torch")
    from engines.detectors.retinaface_net import load_retinaface

    return load_retinaface(checkpoint_dir / "retinaface_mnet025.pth")


def test_torch_and_onnx_outputs_agree_on_a_real_photo(torch_net, backend, detector, media_dir):
    import torch

    images = [read(media_dir, "scenes/six_people.jpg"), read(media_dir, "scenes/two_people.jpg")]
    batch, _ = detector.preprocess(images)
    with torch.no_grad():
        ref = [t.numpy() for t in torch_net(torch.from_numpy(batch))]
    got = backend.run(batch)
    assert [g.shape for g in got] == [r.shape for r in ref]
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, atol=2e-3, rtol=1e-3)
    np.testing.assert_allclose(ref[1].sum(-1), 1.0, atol=1e-5)  # softmaxed


def test_pytorch_backend_detects_the_same_faces(torch_net, detector, media_dir):
    from engines.backends.pytorch_backend import PyTorchBackend

    image = read(media_dir, "scenes/six_people.jpg")
    a = detector.detect(image)
    b = RetinaFace(PyTorchBackend(torch_net, device="cpu")).detect(image)
    assert len(a) == len(b) == 6
    assert iou_matrix(a.boxes, b.boxes).diagonal().min() > 0.99


def test_load_strips_module_prefix_and_is_strict(torch_net, checkpoint_dir, tmp_path):
    import torch

    from engines.detectors.retinaface_net import load_retinaface

    state = torch.load(checkpoint_dir / "retinaface_mnet025.pth", map_location="cpu", weights_only=True)
    prefixed = {f"module.{k}": v for k, v in state.items()}
    torch.save(prefixed, tmp_path / "prefixed.pth")
    net = load_retinaface(tmp_path / "prefixed.pth")
    assert not net.training
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(net(x), torch_net(x)):
            assert torch.equal(a, b)
    state.pop(next(iter(state)))
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(ModelFileError):
        load_retinaface(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelFileError):
        load_retinaface(tmp_path / "junk.pth")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_export_is_dynamic_and_atomic(torch_net, checkpoint_dir, tmp_path):
    import onnx

    from engines.detectors.retinaface_net import export_onnx

    out = export_onnx(checkpoint_dir / "retinaface_mnet025.pth", tmp_path / "rf.onnx")
    assert out == tmp_path / "rf.onnx" and [p.name for p in tmp_path.iterdir()] == ["rf.onnx"]
    model = onnx.load(str(out))
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["loc", "conf", "landms"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, "height", "width"]
    be = OnnxRuntimeBackend(out)
    for shape in [(1, 3, 320, 480), (3, 3, 256, 256)]:
        loc, conf, landms = be.run(np.zeros(shape, np.float32))
        assert loc.shape == (shape[0], len(prior_boxes(*shape[2:])[0]), 4)


def test_failed_export_leaves_no_file(torch_net, checkpoint_dir, tmp_path, monkeypatch):
    import torch

    from engines.detectors.retinaface_net import export_onnx

    def half_written(model, args, f, **kwargs):
        Path(f).write_bytes(b"half a model")
        raise RuntimeError("exporter crashed")

    monkeypatch.setattr(torch.onnx, "export", half_written)
    with pytest.raises(RuntimeError):
        export_onnx(checkpoint_dir / "retinaface_mnet025.pth", tmp_path / "rf.onnx")
    assert list(tmp_path.iterdir()) == []
