"""Nothing kinema loads runs code: pickled weights are refused (and read weights-only when trusted), config
files are data. Each payload below is shown to be live: an unsafe loader does run it."""

import pickle

import pytest
import torch
import yaml

from kinema.cli import main
from kinema.config import load_config
from kinema.models import SpaceTimeUNet
from kinema.models.model_dir import load_model_weights, save_model_dir
from kinema.pipeline import VideoPipeline
from kinema.models.model_dir import video_model_config

TINY = {"model.channels": 8, "model.channel_mult": [1, 2], "model.num_res_blocks": 1, "model.head_dim": 8,
        "model.norm_groups": 4, "model.spatial_attention_levels": [1], "diffusion.num_steps": 100,
        "data.size": 24, "data.num_frames": 4}


class Payload:
    """Unpickling this writes `marker`."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def _model_dir(path):
    config = load_config(None, TINY)
    torch.manual_seed(0)
    net = SpaceTimeUNet(config.model)
    save_model_dir(path, net, video_model_config(config))
    return net


@pytest.mark.parametrize("name, write", [
    ("model.pt", lambda obj, path: torch.save(obj, path)),  # torch's zip format
    ("model.ckpt", lambda obj, path: path.write_bytes(pickle.dumps(obj, protocol=2))),  # a bare pickle
    ("model.bin", lambda obj, path: path.write_bytes(pickle.dumps(obj, protocol=4))),
])
def test_code_running_pickle_is_refused_and_never_runs(tmp_path, capsys, name, write):
    marker = tmp_path / "marker"
    model = tmp_path / "model"
    _model_dir(model)
    (model / "model.safetensors").unlink()
    write(Payload(marker), model / name)

    with pytest.raises(ValueError, match=f"{name} is a pickle.*--trust-pickle"):
        VideoPipeline.from_pretrained(model)
    with pytest.raises(ValueError, match="weights_only=True\\) rejected it: Unsupported"):
        VideoPipeline.from_pretrained(model, trust_pickle=True)
    argv = ["sample", "--model", str(model), "--out", str(tmp_path / "out"), "--num", "1", "--steps", "1"]
    assert main(argv) == 2 and "is a pickle" in capsys.readouterr().err
    assert main(argv + ["--trust-pickle"]) == 2 and "rejected it" in capsys.readouterr().err
    assert not marker.exists()

    # the payload is live: the unsafe loader runs it
    if name == "model.pt":
        torch.load(model / name, weights_only=False)
    else:
        pickle.loads((model / name).read_bytes())
    assert marker.read_text() == "ran"


def test_trusted_honest_pickle_loads_weights_only(tmp_path):
    model = tmp_path / "model"
    net = _model_dir(model)
    (model / "model.safetensors").unlink()
    torch.save({"state_dict": net.state_dict()}, model / "model.pt")
    weights = load_model_weights(model, trust_pickle=True)
    assert weights.keys() == net.state_dict().keys()
    assert all(torch.equal(weights[k], v) for k, v in net.state_dict().items())
    pipe = VideoPipeline.from_pretrained(model, trust_pickle=True)
    assert pipe(1, steps=1, seed=0, progress=False).numpy().shape == (1, 4, 24, 24, 1)


def test_safetensors_win_over_a_pickle_beside_them(tmp_path):
    marker = tmp_path / "marker"
    model = tmp_path / "model"
    _model_dir(model)
    torch.save(Payload(marker), model / "model.pt")
    VideoPipeline.from_pretrained(model, trust_pickle=True)  # reads model.safetensors, never the pickle
    assert not marker.exists()


def test_config_yaml_is_data_not_code(tmp_path):
    marker = tmp_path / "marker"
    text = f"train: !!python/object/apply:os.system ['echo ran > {marker}']\n"
    (tmp_path / "evil.yaml").write_text(text)
    with pytest.raises(ValueError, match="not valid YAML data: could not determine a constructor"):
        load_config(tmp_path / "evil.yaml")
    assert main(["train", "--config", str(tmp_path / "evil.yaml"), "--out", str(tmp_path / "run")]) == 2
    assert not marker.exists() and not (tmp_path / "run").exists()
    yaml.unsafe_load(text)  # the payload is live: an unsafe YAML loader runs it
    assert marker.read_text().strip() == "ran"
