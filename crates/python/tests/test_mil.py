"""anetrain.mil: a MIL kernel on the CPU device against the same math in numpy."""

import struct

import numpy as np
import pytest

import anetrain
from anetrain import mil

CIN, COUT, S = 4, 6, 8

MIL = """program(1.3)
{
    func main<ios18>(tensor<fp16, [1, 4, 1, 8]> x, tensor<fp16, [1, 6, 1, 8]> bias) {
        string pt = const()[name = string("pt"), val = string("valid")];
        tensor<int32, [2]> one = const()[name = string("one"), val = tensor<int32, [2]>([1, 1])];
        tensor<int32, [4]> pad = const()[name = string("pad"), val = tensor<int32, [4]>([0, 0, 0, 0])];
        int32 g = const()[name = string("g"), val = int32(1)];
        tensor<fp16, [6, 4, 1, 1]> w = const()[name = string("w"), val = tensor<fp16, [6, 4, 1, 1]>(BLOBFILE(path = string("@model_path/weights/w.bin"), offset = uint64(64)))];
        tensor<fp16, [1, 6, 1, 8]> h = conv(dilations = one, groups = g, pad = pad, pad_type = pt, strides = one, weight = w, x = x)[name = string("h")];
        tensor<fp16, [1, 6, 1, 8]> sg = sigmoid(x = h)[name = string("sg")];
        tensor<fp16, [1, 6, 1, 8]> sl = mul(x = h, y = sg)[name = string("sl")];
        tensor<fp16, [1, 6, 1, 8]> out = add(x = sl, y = bias)[name = string("out")];
    } -> (out, h);
}
"""


def blob(w: np.ndarray) -> bytes:
    """A one-record BLOBFILE holding `w` as fp16 (file header, record header at 64, data at 128)."""
    payload = w.astype(np.float16).tobytes()
    head = struct.pack("<II", 1, 2).ljust(64, b"\0")
    record = struct.pack("<IIQQ", 0xDEADBEEF, 1, len(payload), 128).ljust(64, b"\0")
    return head + record + payload


@pytest.fixture
def data():
    rng = np.random.default_rng(7)
    # Values exact in fp16, so fp16 and fp32 inputs give the same results.
    w = (rng.integers(-8, 9, size=(COUT, CIN)) / 8).astype(np.float32)
    x = (rng.integers(-12, 13, size=(1, CIN, 1, S)) / 4).astype(np.float32)
    bias = (rng.integers(0, 5, size=(1, COUT, 1, S)) / 8).astype(np.float32)
    h = np.einsum("oc,cs->os", w, x[0, :, 0, :])[None, :, None, :]
    out = h / (1 + np.exp(-h)) + bias
    return w, x, bias, h, out


def test_kernel_on_cpu_matches_numpy_with_in_memory_weights(data):
    w, x, bias, h, out = data
    k = mil.compile(MIL, weights={"@model_path/weights/w.bin": blob(w)}, device="cpu")
    assert k.inputs == [("x", "fp16", [1, CIN, 1, S]), ("bias", "fp16", [1, COUT, 1, S])]
    assert [o[0] for o in k.outputs] == ["out", "h"]
    assert k.device == "cpu (f32)"
    result = k.run(x=x, bias=bias)
    assert set(result) == {"out", "h"}
    assert result["out"].dtype == np.float32 and result["out"].shape == (1, COUT, 1, S)
    np.testing.assert_allclose(result["h"], h, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(result["out"], out, rtol=1e-6, atol=1e-6)


def test_weights_from_a_directory(tmp_path, data):
    w, x, bias, _, out = data
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "w.bin").write_bytes(blob(w))
    k = anetrain.mil.compile(MIL, weights=tmp_path)
    np.testing.assert_allclose(k.run(x=x, bias=bias)["out"], out, rtol=1e-6, atol=1e-6)


def test_numpy_round_trips_fp16_strided_and_lists(data):
    w, x, bias, _, out = data
    k = mil.compile(MIL, weights={"@model_path/weights/w.bin": blob(w)})
    from_f16 = k.run(x=x.astype(np.float16), bias=bias.astype(np.float16))["out"]
    np.testing.assert_allclose(from_f16, out, rtol=1e-6, atol=1e-6)
    # A non-contiguous view and a nested list are converted, not misread.
    wide = np.zeros((1, CIN, 1, 2 * S), np.float32)
    wide[..., ::2] = x
    strided = k.run(x=wide[..., ::2], bias=bias.tolist())["out"]
    np.testing.assert_allclose(strided, out, rtol=1e-6, atol=1e-6)
    # Inputs keep their values between runs.
    np.testing.assert_allclose(k.run()["out"], out, rtol=1e-6, atol=1e-6)


def test_cpu_f16_rounds_like_the_ane(data):
    w, x, bias, _, out = data
    k = mil.compile(MIL, weights={"@model_path/weights/w.bin": blob(w)}, device="cpu-f16")
    got = k.run(x=x, bias=bias)["out"]
    np.testing.assert_allclose(got, out.astype(np.float16).astype(np.float32), rtol=2e-3, atol=2e-3)


def test_errors_raise_with_the_library_message(tmp_path, data):
    w, x, bias, _, _ = data
    with pytest.raises(anetrain.AnetrainError, match="MIL text"):
        mil.compile("program(1.3) { func main<ios18>(")
    with pytest.raises(anetrain.AnetrainError, match="@model_path/weights/w.bin"):
        mil.compile(MIL)
    with pytest.raises(anetrain.AnetrainError, match="cannot be read"):
        mil.compile(MIL, weights=tmp_path / "missing")
    with pytest.raises(ValueError, match="unknown device `gpu`"):
        mil.compile(MIL, weights={"@model_path/weights/w.bin": blob(w)}, device="gpu")
    k = mil.compile(MIL, weights={"@model_path/weights/w.bin": blob(w)})
    with pytest.raises(ValueError, match=r"shape \(1, 4, 1, 7\)|\[1, 4, 1, 7\]"):
        k.run(x=x[..., :7], bias=bias)
    with pytest.raises(ValueError, match="no input named `y`"):
        k.run(y=x)
    with pytest.raises(TypeError, match="weights must be"):
        mil.compile(MIL, weights=3)
