"""Encoder U-Nets (segtrain.encoders): smp's layout, the presets, training, run folders, weights."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import h5py
import keras
import numpy as np
import pytest
from conftest import make_pairs, one_line_error

import brinelite
from segtrain.config import RunConfig
from segtrain.encoders import (
    build_encoder,
    copy_torchvision_weights,
    encoder_unet,
    mobilenetv2_imagenet_file,
)
from segtrain.errors import SegtrainError
from segtrain.models import MODELS, build_model
from segtrain.run_folder import load_model
from segtrain.tasks import ClassMaps

PRESETS = {
    "resnet18-unet": "resnet18",
    "resnet34-unet": "resnet34",
    "mobilenetv2-unet": "mobilenetv2",
}
# segmentation-models-pytorch 0.6.0, Unet(encoder, encoder_weights=None): trainable parameters
# of the encoder and of the decoder (smp's 3x3 head is left out: ours is 1x1, as models.unet's)
SMP_PARAMS = {
    "resnet18": (11_176_512, 3_151_552),
    "resnet34": (21_284_672, 3_151_552),
    "mobilenetv2": (2_223_872, 4_404_928),
}
RUN = ("--size", "32", "--batch-size", "2", "--val", "2", "--epochs", "1", "--lr", "1e-3",
       "--precision", "float32")  # fmt: skip


def trainable(model) -> int:
    return sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)


def single_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    return message


def discs(tmp_path: Path, name: str, classes: bool = False) -> str:
    """Six generated disc pairs installed as ``name``: binary masks, or a class map of
    three classes (ground 0, disc 1, and 2 for the disc's left half)."""
    dest = make_pairs(tmp_path / name.replace("/", "-"), count=6, size=(32, 32))
    if classes:
        for path in (dest / "masks").iterdir():
            disc = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) > 0
            labels = disc.astype(np.uint8)
            labels[:, :16][disc[:, :16]] = 2
            cv2.imwrite(str(path), labels)
        entries = [{"id": k, "name": n} for k, n in enumerate(("ground", "disc", "left"))]
        (dest / "classes.json").write_text(json.dumps({"classes": entries}))
    brinelite.install(str(dest), name=name)
    return name


def randomised(model: keras.Model, seed: int) -> list[np.ndarray]:
    """Give every weight of ``model`` (batch-norm statistics included) seeded random values."""
    rng = np.random.default_rng(seed)
    values = [rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in model.weights]
    model.set_weights(values)
    return values


@pytest.mark.parametrize("encoder", list(SMP_PARAMS))
def test_encoder_unets_are_built_as_smp_builds_them(encoder):
    model = encoder_unet(encoder, 64, 1, "sigmoid")
    features = model.get_layer("encoder")
    assert [out.shape[1] for out in features.outputs] == [32, 16, 8, 4, 2]  # strides 2..32
    head = model.layers[-1]
    assert head.name == "head" and head.kernel_size == (1, 1)
    assert head.activation is keras.activations.sigmoid
    encoder_params, decoder_params = SMP_PARAMS[encoder]
    assert trainable(features) == encoder_params
    assert trainable(model) - trainable(features) - trainable(head) == decoder_params
    concats = [layer for layer in model.layers if isinstance(layer, keras.layers.Concatenate)]
    assert len(concats) == 4  # skips at strides 16, 8, 4, 2; none at full size
    assert model.output_shape == (None, 64, 64, 1)


TORCHVISION_FEATURES = """
import sys, numpy as np, torch, torchvision
torch.manual_seed(0)
resnet = getattr(torchvision.models, sys.argv[1])().eval()
for module in resnet.modules():  # batch-norm statistics other than 0 and 1
    if isinstance(module, torch.nn.BatchNorm2d):
        module.running_mean.uniform_(-0.5, 0.5)
        module.running_var.uniform_(0.5, 2.0)
x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype("float32")
with torch.no_grad():
    y = resnet.relu(resnet.bn1(resnet.conv1(torch.from_numpy(x))))
    features = [y]
    y = resnet.maxpool(y)
    for stage in (resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4):
        y = stage(y)
        features.append(y)
weights = {"weights/" + k: v.numpy() for k, v in resnet.state_dict().items()}
found = {f"feature{k}": f.numpy().transpose(0, 2, 3, 1) for k, f in enumerate(features)}
np.savez(sys.argv[2], x=x.transpose(0, 2, 3, 1), **weights, **found)
"""


@pytest.mark.parametrize("encoder", ["resnet18", "resnet34"])
def test_resnet_encoders_compute_torchvisions_features(encoder, tmp_path):
    """torchvision's weights, copied over, give torchvision's features at every stride.

    torch (the dev extra installs it) runs in another process: importing it after
    TensorFlow crashes this one."""
    out = tmp_path / "torchvision.npz"
    script = [sys.executable, "-c", TORCHVISION_FEATURES, encoder, str(out)]
    subprocess.run(script, check=True, capture_output=True)
    saved = np.load(out)
    state = {key.removeprefix("weights/"): saved[key] for key in saved if "/" in key}
    built = build_encoder(encoder, 64)
    copy_torchvision_weights(built, state)
    for k, ours in enumerate(built.predict(saved["x"], verbose=0)):
        np.testing.assert_allclose(ours, saved[f"feature{k}"], rtol=1e-4, atol=1e-4)


def test_presets_and_their_checks_need_no_keras():
    assert set(PRESETS) <= set(MODELS)
    for preset in PRESETS:
        assert RunConfig(model=preset).resolved().size == 128
        assert RunConfig(model=preset, size=96).size == 96
        with pytest.raises(
            SegtrainError, match="input size 48 is not divisible by 2\\*\\*depth = 32"
        ):
            RunConfig(model=preset, size=48)
    with pytest.raises(SegtrainError, match="resnet34 has no ImageNet weights in Keras"):
        RunConfig(model="resnet34-unet", encoder_weights="imagenet")
    with pytest.raises(SegtrainError, match="this model has no pretrained encoder"):
        RunConfig(model="small", encoder_weights="imagenet")
    with pytest.raises(SegtrainError, match="takes none, imagenet or the path of a .weights.h5"):
        RunConfig(model="resnet18-unet", encoder_weights="weights.h5")
    assert RunConfig(model="mobilenetv2-unet", encoder_weights="imagenet").encoder_weights


def test_cli_refuses_what_cannot_be_built_in_one_line(tmp_path, segtrain_cli):
    data = discs(tmp_path, "gen/discs")
    for args, words in (
        (("--model", "resnet18-unet", "--size", "80"), ("pick a multiple of 32",)),
        (("--model", "resnet18-unet", "--encoder-weights", "imagenet"), ("no ImageNet weights",)),
        (("--model", "tiny", "--encoder-weights", "x.weights.h5"), ("no pretrained encoder",)),
        (("--model", "resnet18-unet", "--encoder-weights", str(tmp_path / "gone.weights.h5")),
         ("gone.weights.h5 not found",)),
    ):  # fmt: skip
        result = segtrain_cli("train", data, *RUN, *args, "--out", tmp_path / "run")
        one_line_error(result, *words)
        assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("preset", "classes", "weights"),
    [
        ("resnet18-unet", True, None),
        ("resnet34-unet", False, None),
        ("mobilenetv2-unet", False, "mobilenetv2"),
    ],
    ids=["resnet18-classes", "resnet34-binary", "mobilenetv2-binary-weights"],
)  # every preset once, binary and class maps both
def test_presets_train_and_come_back_from_the_run_folder(
    preset, classes, weights, tmp_path, segtrain_cli
):
    """The task's head is the same for every encoder: class maps train on one preset."""
    data = discs(tmp_path, "gen/discs", classes)
    run = tmp_path / "run"
    path = tmp_path / "encoder.weights.h5"
    if weights:
        build_encoder(weights, 32).save_weights(path)
    options = ("--encoder-weights", str(path)) if weights else ()
    trained = segtrain_cli("train", data, "--model", preset, *RUN, *options, "--out", run)
    assert trained.code == 0, trained.err
    config = json.loads((run / "config.json").read_text())
    recorded = str(path) if weights else "none"
    assert (config["model"], config["size"], config["encoder_weights"]) == (preset, 32, recorded)
    path.unlink(missing_ok=True)  # best.weights.h5 holds every weight: the file is not needed

    model = load_model(run)
    outputs = 3 if classes else 1
    assert model.output_shape == (None, 32, 32, outputs)
    head = model.layers[-1].activation
    assert head is (keras.activations.softmax if classes else keras.activations.sigmoid)
    x = np.random.default_rng(1).random((2, 32, 32, 3), dtype="float32")
    final = keras.models.load_model(run / "model.keras")  # one epoch: the best is the final
    np.testing.assert_allclose(model.predict(x, verbose=0), final.predict(x, verbose=0), atol=1e-6)


def test_mixed_bfloat16_keeps_the_head_float32():
    three = brinelite.ClassMap.from_json(
        {"classes": [{"id": k, "name": f"c{k}"} for k in range(3)]}
    )
    model = build_model("resnet18-unet", 32, precision="mixed_bfloat16", task=ClassMaps(three))
    assert model.get_layer("encoder").get_layer("conv1").compute_dtype == "bfloat16"
    head = model.layers[-1]
    assert head.compute_dtype == "float32" and head.activation is keras.activations.softmax
    assert keras.config.dtype_policy().name == "float32"  # set only while building


def test_encoder_weights_file_loads_into_the_encoder(tmp_path):
    saved = build_encoder("resnet18", 32)
    values = randomised(saved, seed=3)
    path = tmp_path / "r18.weights.h5"
    saved.save_weights(path)

    model = build_model("resnet18-unet", 64, encoder_weights=str(path))  # another size
    loaded = model.get_layer("encoder").get_weights()
    assert len(loaded) == len(values)
    for ours, theirs in zip(loaded, values, strict=True):
        np.testing.assert_array_equal(ours, theirs)
    fresh = build_model("resnet18-unet", 64).get_layer("encoder").get_weights()
    assert not np.array_equal(fresh[0], values[0])


def test_encoder_weights_that_do_not_fit_are_one_line(tmp_path):
    build_encoder("resnet18", 32).save_weights(tmp_path / "r18.weights.h5")
    build_encoder("mobilenetv2", 32).save_weights(tmp_path / "m.weights.h5")
    (tmp_path / "text.weights.h5").write_text("not HDF5")
    for encoder, name in (("resnet34", "r18"), ("resnet18", "m"), ("resnet18", "text")):
        path = tmp_path / f"{name}.weights.h5"
        with pytest.raises(SegtrainError) as error:
            build_encoder(encoder, 32, str(path))
        message = single_line(error)
        assert f"{path} does not hold {encoder} encoder weights" in message
        assert f"build_encoder('{encoder}', SIZE).save_weights(PATH)" in message


@pytest.fixture
def keras_home(tmp_path, monkeypatch) -> Path:
    """An empty Keras cache, and MobileNetV2's weights URL on a 127.0.0.1 port that refuses."""
    home = tmp_path / "keras-home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    port = closed.getsockname()[1]
    monkeypatch.setattr("segtrain.encoders.MOBILENETV2_URL", f"http://127.0.0.1:{port}/")
    yield home
    closed.close()


def test_imagenet_weights_offline_is_one_line_naming_file_and_folder(keras_home):
    import segtrain.encoders

    with pytest.raises(SegtrainError) as error:
        build_encoder("mobilenetv2", 64, "imagenet")
    message = single_line(error)
    name = mobilenetv2_imagenet_file(64)
    assert f"fetch {segtrain.encoders.MOBILENETV2_URL}{name} elsewhere" in message
    assert f"put it at {keras_home / 'models' / name}" in message
    assert not (keras_home / "models" / name).exists()


# keras.applications warns that 64 px is not one of its ImageNet sizes (and picks 224's
# weights): the very case the test asks it about.
@pytest.mark.filterwarnings("ignore:`input_shape` is undefined or non-square")
@pytest.mark.parametrize("size", [64, 128])
def test_the_imagenet_file_is_the_one_keras_applications_fetches(size, monkeypatch):
    from keras.src.applications import mobilenet_v2
    from keras.src.utils import file_utils

    import segtrain.encoders

    asked = []

    def refuse(fname, origin, **options):
        asked.append((fname, origin))
        raise RuntimeError("no network in tests")

    monkeypatch.setattr(file_utils, "get_file", refuse)
    with pytest.raises(RuntimeError):
        keras.applications.MobileNetV2((size, size, 3), include_top=False, weights="imagenet")
    name = mobilenetv2_imagenet_file(size)
    assert asked == [(name, mobilenet_v2.BASE_WEIGHT_PATH + name)]
    assert segtrain.encoders.MOBILENETV2_URL == mobilenet_v2.BASE_WEIGHT_PATH


def test_imagenet_weights_put_in_keras_cache_load_offline(keras_home):
    """Following the offline message works: the file in $KERAS_HOME/models is used."""
    from keras.src.legacy.saving import legacy_h5_format  # the format keras.applications ships

    source = keras.applications.MobileNetV2(
        input_shape=(64, 64, 3), include_top=False, weights=None
    )
    values = randomised(source, seed=5)
    (keras_home / "models").mkdir(parents=True)
    with h5py.File(keras_home / "models" / mobilenetv2_imagenet_file(64), "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, source)

    loaded = build_encoder("mobilenetv2", 64, "imagenet").get_weights()
    assert len(loaded) == len(values)
    for ours, theirs in zip(loaded, values, strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_a_broken_file_in_keras_cache_is_one_line(keras_home):
    (keras_home / "models").mkdir(parents=True)
    cached = keras_home / "models" / mobilenetv2_imagenet_file(96)
    cached.write_bytes(b"<html>not the weights</html>")
    with pytest.raises(SegtrainError) as error:
        build_encoder("mobilenetv2", 96, "imagenet")
    message = single_line(error)
    assert f"{cached} does not hold MobileNetV2's ImageNet weights" in message
    assert "delete it to download it again" in message
