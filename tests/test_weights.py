"""Weights in and out: safetensors, PyTorch files, pretrained ResNets by name.

Everything runs offline. Weights are made locally: minires's resnet18 (whose names and
shapes are torchvision's) and a small PyTorch ResNet-18 written here (torchvision is not
needed), with random weights and random BatchNorm statistics so that a misplaced tensor
changes the logits. Downloads go to a file server on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import minires as mr
from minires import nn
from minires.data import DatasetError
from minires.models import pretrained
from minires.serialization import CheckpointError

ROOT = Path(__file__).resolve().parent.parent


def randomize(model, seed=0):
    """Random weights and BatchNorm statistics (a fresh model's are zeros and ones)."""
    rng = np.random.default_rng(seed)
    for name, value in model.state_dict().items():
        if value.dtype.kind != "f":
            value.data[...] = rng.integers(0, 100)
        elif name.endswith("running_var"):
            value.data[...] = rng.uniform(0.5, 2.0, value.shape)
        else:
            value.data[...] = rng.standard_normal(value.shape) * (0.5 if "bn" in name else 0.05)
    return model.eval()


def images(seed=1):
    return np.random.default_rng(seed).standard_normal((2, 3, 64, 64)).astype(np.float32)


def logits(model, x):
    with mr.no_grad():
        return model.eval()(mr.tensor(x)).numpy()


def assert_same_state(a: dict, b: dict):
    assert list(a) == list(b) or sorted(a) == sorted(b)
    for key in a:
        x = a[key].numpy() if hasattr(a[key], "numpy") else np.asarray(a[key])
        y = b[key].numpy() if hasattr(b[key], "numpy") else np.asarray(b[key])
        assert x.dtype == y.dtype and x.shape == y.shape, key
        assert x.tobytes() == y.tobytes(), key  # bit for bit


# --------------------------------------------------------------------------- PyTorch's side


def torch_resnet18(num_classes=1000):
    """ResNet-18 in PyTorch with torchvision's layer names (conv1, layer1.0.downsample.0 ...)."""
    torch = pytest.importorskip("torch")
    tnn = torch.nn

    class Block(tnn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(cout)
            self.relu = tnn.ReLU(inplace=True)
            self.conv2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride, bias=False),
                                                 tnn.BatchNorm2d(cout))

        def forward(self, x):
            out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            return self.relu(out + (x if self.downsample is None else self.downsample(x)))

    class ResNet18(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = tnn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = tnn.BatchNorm2d(64)
            self.relu = tnn.ReLU(inplace=True)
            self.maxpool = tnn.MaxPool2d(3, 2, 1)
            widths, cin = (64, 128, 256, 512), 64
            for i, width in enumerate(widths):
                stride = 1 if i == 0 else 2
                setattr(self, f"layer{i + 1}", tnn.Sequential(Block(cin, width, stride),
                                                              Block(width, width, 1)))
                cin = width
            self.avgpool = tnn.AdaptiveAvgPool2d(1)
            self.fc = tnn.Linear(512, num_classes)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return ResNet18()


def torch_random_state(num_classes=1000, seed=0):
    torch = pytest.importorskip("torch")
    torch.manual_seed(seed)
    model = torch_resnet18(num_classes)
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if name.endswith("running_mean"):
                value.normal_(0, 0.5)
            elif name.endswith("running_var"):
                value.uniform_(0.5, 2.0)
            elif name.endswith("num_batches_tracked"):
                value.fill_(17)
            elif "bn" in name or "downsample.1" in name:
                value.normal_(0, 0.5)
    return model.eval()


def torch_logits(model, x):
    torch = pytest.importorskip("torch")
    with torch.no_grad():
        return model.eval()(torch.from_numpy(x)).numpy()


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(np.abs(b).max()))


def test_minires_names_and_shapes_are_those_of_the_pytorch_reference():
    ours = mr.models.resnet18().state_dict()
    theirs = torch_resnet18().state_dict()
    assert list(ours) == list(theirs)
    assert all(tuple(ours[k].shape) == tuple(theirs[k].shape) for k in ours)


# --------------------------------------------------------------------------- safetensors


def test_minires_safetensors_load_in_pytorch_strictly_and_give_the_same_logits(tmp_path):
    pytest.importorskip("torch")
    from safetensors.torch import load_file

    model = randomize(mr.models.resnet18())
    mr.save_safetensors(model.state_dict(), tmp_path / "r18.safetensors")
    state = load_file(tmp_path / "r18.safetensors")
    assert_same_state(model.state_dict(), {k: v.numpy() for k, v in state.items()})
    theirs = torch_resnet18()
    theirs.load_state_dict(state, strict=True)
    close(torch_logits(theirs, images()), logits(model, images()))


def test_pytorch_safetensors_load_in_minires_and_give_the_same_logits(tmp_path):
    pytest.importorskip("torch")
    from safetensors.torch import save_file

    theirs = torch_random_state()
    save_file(theirs.state_dict(), tmp_path / "torch.safetensors")
    state = mr.load_safetensors(tmp_path / "torch.safetensors")
    assert all(isinstance(v, mr.Tensor) for v in state.values())
    assert_same_state({k: v.numpy() for k, v in theirs.state_dict().items()}, state)
    model = mr.models.resnet18()
    model.load_state_dict(state, strict=True)
    close(logits(model, images()), torch_logits(theirs, images()))
    # mr.load knows the format by its content, whatever the file is called
    os.replace(tmp_path / "torch.safetensors", tmp_path / "weights.bin")
    assert_same_state(state, mr.load(tmp_path / "weights.bin"))


def test_mr_save_writes_safetensors_by_suffix_or_when_asked(tmp_path):
    state = {"w": mr.randn(3, 2), "n": mr.tensor(np.array(4, dtype=np.int64)),
             "h": np.ones(2, dtype=np.float16)}
    mr.save(state, tmp_path / "a.safetensors")
    mr.save(state, tmp_path / "b.weights", format="safetensors")
    mr.save(state, tmp_path / "c.safetensors", format="minires")
    for name in ("a.safetensors", "b.weights"):
        assert (tmp_path / name).read_bytes()[8:9] == b"{"
        back = mr.load(tmp_path / name)
        assert back["n"].shape == () and back["h"].dtype == np.float16  # 0-d stays 0-d
        assert_same_state({k: np.asarray(getattr(v, "data", v)) for k, v in state.items()},
                          back)
    assert (tmp_path / "c.safetensors").read_bytes()[:2] == b"PK"
    with pytest.raises(ValueError, match="unknown format 'pickle'"):
        mr.save(state, tmp_path / "d", format="pickle")


@pytest.mark.parametrize("state, message", [
    ([mr.ones(2)], "expected a flat dict"),
    ({"opt": {"step": mr.ones(1)}}, r"'opt' is a dict; a safetensors file holds a flat dict"),
    ({"step": 3}, r"'step' is a int"),
    ({1: mr.ones(1)}, "names must be str"),
    ({"s": np.array(["a"])}, "dtype <U1, which safetensors cannot store"),
])
def test_what_safetensors_cannot_hold_is_refused_by_name(tmp_path, state, message):
    with pytest.raises(TypeError, match=message):
        mr.save_safetensors(state, tmp_path / "x.safetensors")
    assert os.listdir(tmp_path) == []


def test_a_failed_safetensors_write_leaves_the_previous_file(tmp_path, monkeypatch):
    import safetensors.numpy

    path = tmp_path / "w.safetensors"
    mr.save_safetensors({"w": mr.ones(2)}, path)
    before = path.read_bytes()

    def full_disk(arrays, metadata=None):
        raise OSError("No space left on device (simulated)")

    monkeypatch.setattr(safetensors.numpy, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        mr.save_safetensors({"w": mr.zeros(2)}, path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["w.safetensors"]


def test_bfloat16_safetensors_are_refused_with_the_tensor_named(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    save_file({"w": torch.ones(2, dtype=torch.bfloat16)}, tmp_path / "bf16.safetensors")
    with pytest.raises(CheckpointError, match=r"bf16.safetensors: tensor 'w' has dtype BF16"):
        mr.load(tmp_path / "bf16.safetensors")


def test_a_corrupt_safetensors_header_is_a_checkpoint_error(tmp_path):
    mr.save_safetensors({"w": mr.ones(4)}, tmp_path / "w.safetensors")
    data = bytearray((tmp_path / "w.safetensors").read_bytes())
    data[data.index(b"[4]"): data.index(b"[4]") + 3] = b"[9]"  # shape no longer fits its bytes
    (tmp_path / "bad.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="bad.safetensors is not a valid safetensors file"):
        mr.load_safetensors(tmp_path / "bad.safetensors")


# --------------------------------------------------------------------------- PyTorch files


def test_pytorch_state_dicts_round_trip_bit_exactly_and_give_pytorchs_logits(tmp_path):
    torch = pytest.importorskip("torch")
    theirs = torch_random_state()
    torch.save(theirs.state_dict(), tmp_path / "resnet18.pth")
    state = mr.load(tmp_path / "resnet18.pth")
    assert_same_state({k: v.numpy() for k, v in theirs.state_dict().items()}, state)
    model = mr.models.resnet18(weights=tmp_path / "resnet18.pth")
    close(logits(model, images()), torch_logits(theirs, images()))
    # and back: minires weights as a .pth through safetensors give the same state in torch
    mr.save_safetensors(model.state_dict(), tmp_path / "back.safetensors")
    from safetensors.torch import load_file

    back = torch_resnet18()
    back.load_state_dict(load_file(tmp_path / "back.safetensors"), strict=True)
    assert_same_state({k: v.numpy() for k, v in back.state_dict().items()},
                      {k: v.numpy() for k, v in theirs.state_dict().items()})


def test_legacy_pytorch_files_are_read_too(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({"w": torch.arange(4.0)}, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    np.testing.assert_array_equal(mr.load(tmp_path / "old.pt")["w"].numpy(), np.arange(4.0))


@pytest.mark.parametrize("wrap", ["state_dict", "model", "module", "both"])
def test_wrapped_and_dataparallel_state_dicts_are_unwrapped(tmp_path, wrap):
    torch = pytest.importorskip("torch")
    theirs = torch_random_state(seed=3)
    state = dict(theirs.state_dict())
    if wrap in ("module", "both"):
        state = {"module." + k: v for k, v in state.items()}
    if wrap in ("state_dict", "both"):
        state = {"epoch": 90, "state_dict": state, "optimizer": {"lr": 0.1}}
    if wrap == "model":
        state = {"model": state, "args": ["--lr", "0.1"]}
    torch.save(state, tmp_path / "checkpoint.pth")
    model = mr.models.resnet18(weights=tmp_path / "checkpoint.pth")
    assert_same_state({k: v.numpy() for k, v in theirs.state_dict().items()},
                      model.state_dict())


def test_a_minires_training_checkpoint_gives_its_model_weights(tmp_path):
    model = randomize(mr.models.resnet18(), seed=5)
    mr.save({"format": "minires-checkpoint", "epoch": 3, "model": model.state_dict(),
             "optimizer": {"state": {}, "param_groups": []}}, tmp_path / "checkpoint.mr")
    loaded = mr.models.resnet18(weights=tmp_path / "checkpoint.mr")
    assert_same_state(model.state_dict(), loaded.state_dict())


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_a_pytorch_file_with_code_is_refused_by_the_weights_only_loader(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({"w": torch.ones(1), "payload": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match=r"evil.pth holds objects other than tensors .* "
                                              r"weights_only loader refused it"):
        mr.load(tmp_path / "evil.pth")


def test_without_torch_a_pytorch_file_names_the_extra(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    torch.save({"w": torch.ones(1)}, tmp_path / "w.pth")
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now fails
    with pytest.raises(CheckpointError, match=r"w.pth is a PyTorch file.*not installed: pip "
                                              r"install 'minires\[torch\]'"):
        mr.load(tmp_path / "w.pth")


def test_a_torch_with_a_known_weights_only_flaw_is_not_used(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    torch.save({"w": torch.ones(1)}, tmp_path / "w.pth")
    monkeypatch.setattr(torch, "__version__", "2.5.1")
    with pytest.raises(CheckpointError, match=r"torch 2.5.1's weights_only loader has "
                                              r"published code-execution flaws.*>= 2.10"):
        mr.load(tmp_path / "w.pth")


def test_bfloat16_pytorch_tensors_are_refused_with_their_path(tmp_path):
    torch = pytest.importorskip("torch")
    torch.save({"layer": {"w": torch.ones(2, dtype=torch.bfloat16)}}, tmp_path / "bf.pth")
    with pytest.raises(CheckpointError, match=r"bf.pth: obj\['layer'\]\['w'\] has dtype "
                                              r"torch.bfloat16"):
        mr.load(tmp_path / "bf.pth")


# --------------------------------------------------------------------------- load_weights checks


def test_weights_of_another_architecture_are_refused_naming_what_differs(tmp_path):
    mr.save(mr.models.resnet34().state_dict(), tmp_path / "r34.mr")
    with pytest.raises(CheckpointError, match=r"r34.mr into ResNet:\n  names do not match "
                                              r"ResNet's: 0 missing, 96 unexpected "
                                              r"\(layer1.2.conv1.weight, .*, \.\.\.\); are "
                                              r"these weights of another architecture"):
        mr.models.resnet18(weights=tmp_path / "r34.mr")


def test_a_head_of_another_size_is_refused_with_both_shapes(tmp_path):
    mr.save(mr.models.resnet18(num_classes=10).state_dict(), tmp_path / "r18-10.mr")
    with pytest.raises(CheckpointError, match=r"fc.weight: shape \(10, 512\) in .*r18-10.mr, "
                                              r"\(1000, 512\) in the model"):
        mr.models.resnet18(weights=tmp_path / "r18-10.mr")
    model = mr.models.resnet18(num_classes=10, weights=tmp_path / "r18-10.mr")  # matches
    assert model.fc.weight.shape == (10, 512)


def test_an_integer_tensor_for_a_float_parameter_is_refused():
    model = nn.Linear(2, 3)
    state = {"weight": np.ones((3, 2), dtype=np.int64), "bias": np.zeros(3, np.float32)}
    with pytest.raises(CheckpointError, match=r"weight: dtype int64 in a state dict, float32"):
        mr.models.load_weights(model, state)
    report = mr.models.load_weights(model, {"weight": np.ones((3, 2), np.float64),
                                            "bias": np.zeros(3, np.float32)})
    assert report.loaded == ["bias", "weight"] and model.weight.dtype == np.float32


def test_files_without_batchnorm_counters_get_zeros_as_in_pytorch(tmp_path):
    model = randomize(mr.models.resnet18(), seed=2)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    mr.save_safetensors(state, tmp_path / "old.safetensors")
    loaded = mr.models.resnet18(weights=tmp_path / "old.safetensors")
    counters = [v for k, v in loaded.state_dict().items() if k.endswith("num_batches_tracked")]
    assert len(counters) == 20 and all(int(c.item()) == 0 for c in counters)
    assert_same_state(state, {k: v for k, v in loaded.state_dict().items() if k in state})


def test_a_missing_weights_file_lists_the_published_names(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no such file .*nope.pth.*'DEFAULT', "
                                                r"'IMAGENET1K_V1'"):
        mr.models.resnet18(weights=str(tmp_path / "nope.pth"))


def test_published_weights_know_their_hash_and_preprocessing():
    weights = pretrained.pretrained_weights("resnet18", "DEFAULT")
    assert weights.url == "https://download.pytorch.org/models/resnet18-f37072fd.pth"
    assert weights.sha256_prefix == "f37072fd"
    assert pretrained.pretrained_weights("resnet50", "ResNet50_Weights.DEFAULT").name == \
        "IMAGENET1K_V2"
    v2 = pretrained.pretrained_weights("resnet50", "imagenet1k_v2")
    assert (v2.resize, v2.crop) == (232, 224)
    steps = pretrained.pretrained_weights("resnet34", "IMAGENET1K_V1").transforms().transforms
    assert [type(s).__name__ for s in steps] == ["Resize", "CenterCrop", "Normalize"]
    assert steps[2].mean == mr.data.IMAGENET_MEAN and steps[2].std == mr.data.IMAGENET_STD
    out = pretrained.pretrained_weights("resnet18").transforms()(
        np.random.default_rng(0).random((2, 3, 300, 400), dtype=np.float32))
    assert out.shape == (2, 3, 224, 224)
    with pytest.raises(ValueError, match="no published weights 'IMAGENET22K'"):
        pretrained.pretrained_weights("resnet18", "IMAGENET22K")
    with pytest.raises(ValueError, match=r"classify 1000 classes; build the model with "
                                         r"num_classes=1000"):
        mr.models.resnet18(num_classes=10, weights="DEFAULT")


# --------------------------------------------------------------------------- downloads


class FileServer:
    """Serves ``files`` (name -> bytes) on 127.0.0.1; ``truncate`` names are cut short."""

    def __init__(self, files: dict, truncate=()):
        self.files, self.truncate, self.requests = files, set(truncate), []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                name = self.path.lstrip("/")
                server.requests.append(name)
                if name not in server.files:
                    self.send_error(404)
                    return
                data = server.files[name]
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2] if name in server.truncate else data)
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def published(tmp_path, monkeypatch, data: bytes, url_base: str, suffix=".safetensors",
              name_hash=None):
    """Register ``data`` as resnet18's DEFAULT weights at ``url_base`` (hash in its name)."""
    prefix = name_hash or hashlib.sha256(data).hexdigest()[:8]
    weights = pretrained.PretrainedWeights("resnet18", "TEST_V1", f"resnet18-{prefix}{suffix}",
                                           url_base=url_base, source="a test server")
    monkeypatch.setitem(pretrained.WEIGHTS, "resnet18", {"TEST_V1": weights})
    monkeypatch.setitem(pretrained.DEFAULT, "resnet18", "TEST_V1")
    monkeypatch.setenv("MINIRES_DATA", str(tmp_path / "cache"))
    return weights


def weights_bytes(tmp_path, seed=0) -> tuple:
    model = randomize(mr.models.resnet18(), seed=seed)
    mr.save_safetensors(model.state_dict(), tmp_path / "src.safetensors")
    return model, (tmp_path / "src.safetensors").read_bytes()


def cache_files(tmp_path) -> list:
    folder = tmp_path / "cache" / "weights"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_named_weights_download_once_verified_then_come_from_the_cache(tmp_path, monkeypatch):
    model, data = weights_bytes(tmp_path)
    with FileServer({}) as server:
        weights = published(tmp_path, monkeypatch, data, server.url)
        server.files[weights.filename] = data
        first = mr.models.resnet18(weights="DEFAULT")
        assert server.requests == [weights.filename]
        second = mr.models.resnet18(weights="TEST_V1")
        assert server.requests == [weights.filename]  # from the cache: no second request
    assert_same_state(model.state_dict(), first.state_dict())
    assert_same_state(model.state_dict(), second.state_dict())
    assert cache_files(tmp_path) == [".minires-verified.json", weights.filename]
    assert (tmp_path / "cache" / "weights" / weights.filename).read_bytes() == data


def small_weights(tmp_path) -> bytes:
    mr.save_safetensors({"fc.bias": mr.arange(10.0)}, tmp_path / "small.safetensors")
    return (tmp_path / "small.safetensors").read_bytes()


def test_a_download_with_the_wrong_hash_leaves_nothing(tmp_path, monkeypatch):
    data = small_weights(tmp_path)
    with FileServer({}) as server:
        weights = published(tmp_path, monkeypatch, data, server.url, name_hash="0badc0de")
        server.files[weights.filename] = data
        with pytest.raises(DatasetError) as info:
            pretrained.weights_file(weights)
    message = str(info.value)
    assert f"downloaded {weights.url} but its SHA-256 is {hashlib.sha256(data).hexdigest()}" \
        in message and "expected SHA-256 starting with 0badc0de" in message
    assert "To place it by hand" in message and weights.filename in message
    assert cache_files(tmp_path) == []


def test_a_truncated_download_leaves_nothing(tmp_path, monkeypatch):
    data = small_weights(tmp_path)
    with FileServer({}) as server:
        weights = published(tmp_path, monkeypatch, data, server.url)
        server.files[weights.filename] = data
        server.truncate.add(weights.filename)
        with pytest.raises(DatasetError, match=rf"{re.escape(weights.url)} was cut short: "
                                               rf"{len(data) // 2} of {len(data)} bytes"):
            pretrained.weights_file(weights)
    assert cache_files(tmp_path) == []


def test_offline_the_error_says_where_to_put_the_file(tmp_path, monkeypatch):
    data = small_weights(tmp_path)
    with socket.socket() as sock:  # a port nothing listens on: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    weights = published(tmp_path, monkeypatch, data, f"http://127.0.0.1:{port}/")
    with pytest.raises(DatasetError) as info:
        pretrained.weights_file(weights)
    message = str(info.value)
    target = str(tmp_path / "cache" / "weights" / weights.filename)
    assert "are you offline?" in message and "refused" in message.lower()
    assert f"save it as {target}" in message and weights.sha256_prefix in message
    assert cache_files(tmp_path) == []
    # placed there by hand, it is used (and verified) without the network
    os.makedirs(os.path.dirname(target), exist_ok=True)
    Path(target).write_bytes(data)
    assert pretrained.weights_file(weights) == target
    Path(target).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # a changed byte
    with pytest.raises(DatasetError, match=rf"{re.escape(target)} has SHA-256 .*expected one "
                                           rf"starting with {weights.sha256_prefix}"):
        pretrained.weights_file(weights)


def test_pytorch_weights_by_name_need_torch_before_downloading(tmp_path, monkeypatch):
    with FileServer({}) as server:
        weights = published(tmp_path, monkeypatch, b"x", server.url, suffix=".pth",
                            name_hash="12345678")
        monkeypatch.setitem(sys.modules, "torch", None)
        with pytest.raises(CheckpointError, match=r"pip install 'minires\[torch\]'"):
            mr.models.resnet18(weights="DEFAULT")
        assert server.requests == [] and weights.filename.endswith(".pth")


def test_torchvision_format_weights_by_name_load_through_torch(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    theirs = torch_random_state(seed=9)
    torch.save(theirs.state_dict(), tmp_path / "tv.pth")
    data = (tmp_path / "tv.pth").read_bytes()
    with FileServer({}) as server:
        weights = published(tmp_path, monkeypatch, data, server.url, suffix=".pth")
        server.files[weights.filename] = data
        model = mr.models.resnet18(weights="DEFAULT")
    close(logits(model, images()), torch_logits(theirs, images()))


# --------------------------------------------------------------------------- the docs page


def test_the_weights_page_python_blocks_run(tmp_path):
    text = (ROOT / "docs" / "weights.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python[ \t]*\n(.*?)^```[ \t]*$", text, re.S | re.M)
    assert blocks, "docs/weights.md has no runnable python blocks"
    script = tmp_path / "blocks.py"
    script.write_text("\n\n".join(blocks), encoding="utf-8")
    env = dict(os.environ, MINIRES_DATA=str(tmp_path / "data"), PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    with contextlib.suppress(KeyError):
        del env["MPLBACKEND"]
    run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr


def test_a_compressed_pytorch_zip_is_refused_before_torch_inflates_it(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    import zipfile

    torch.save({"w": torch.zeros(1 << 20)}, tmp_path / "plain.pth")  # 4 MiB of zeros
    with zipfile.ZipFile(tmp_path / "plain.pth") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    with zipfile.ZipFile(tmp_path / "bomb.pth", "w", compression=zipfile.ZIP_DEFLATED) as out:
        for name, data in members.items():
            out.writestr(name, data)
    assert (tmp_path / "bomb.pth").stat().st_size < 100_000

    def must_not_run(*args, **kwargs):
        raise AssertionError("torch.load was reached")

    monkeypatch.setattr(torch, "load", must_not_run)
    with pytest.raises(CheckpointError, match=r"bomb.pth: member .*data.pkl is compressed "
                                              r"\(deflate\)"):
        mr.load(tmp_path / "bomb.pth")
