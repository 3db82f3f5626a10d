"""TorchServe handler for bench/compare_serving --peer torchserve: the same model, classes and
preprocessing as `finetune serve RUN_DIR` and bench/serve_fastapi.py.

The .mar holds the run's model.safetensors (serialized file) and config.json (extra file); this
handler builds torchvision's mobilenet_v2 with the run's number of classes and loads the weights
strictly (eager mode, as the FastAPI peer does). Preprocessing: PIL decode, RGB,
Resize(resize_size, bilinear), CenterCrop(crop_size), ToTensor, Normalize(mean, std). A batch
(TorchServe's batch_size/max_batch_delay) goes through one forward pass. Each answer is
{"predictions": [{"top_k": [...]}]}, as the other two servers answer. Threads: TS_TORCH_THREADS
(default 2).
"""
import io
import json
import os

import torch
import torchvision
from PIL import Image
from safetensors.torch import load_file
from torchvision import transforms


class MobileNetV2Handler:
    def __init__(self):
        self.model = None
        self.classes = None
        self.preprocess = None
        self.initialized = False

    def initialize(self, context):
        model_dir = context.system_properties.get("model_dir")
        torch.set_num_threads(int(os.environ.get("TS_TORCH_THREADS", "2")))
        config = json.load(open(os.path.join(model_dir, "config.json")))
        assert config["architecture"] == "mobilenet_v2", config["architecture"]
        self.classes = config["classNames"] if "classNames" in config else config["class_names"]
        p = config["preprocessing"]
        model = torchvision.models.mobilenet_v2(num_classes=len(self.classes))
        weights = context.manifest["model"]["serializedFile"]
        model.load_state_dict(load_file(os.path.join(model_dir, weights)), strict=True)
        self.model = model.eval()
        self.preprocess = transforms.Compose([
            transforms.Resize(p["resizeSize"], interpolation=transforms.InterpolationMode.BILINEAR),
            transforms.CenterCrop(p["cropSize"]), transforms.ToTensor(),
            transforms.Normalize(p["mean"], p["std"])])
        self.initialized = True

    def handle(self, data, context):
        images = []
        for row in data:
            body = row.get("data") if row.get("data") is not None else row.get("body")
            image = Image.open(io.BytesIO(bytes(body))).convert("RGB")
            images.append(self.preprocess(image))
        with torch.inference_mode():
            probabilities = torch.softmax(self.model(torch.stack(images)), dim=1)
        values, indices = probabilities.topk(min(5, len(self.classes)), dim=1)
        return [{"predictions": [{"top_k": [{"class": self.classes[i], "index": int(i), "probability": float(v)}
                                            for v, i in zip(vs, ids)]}]}
                for vs, ids in zip(values.tolist(), indices.tolist())]


_service = MobileNetV2Handler()


def handle(data, context):
    if not _service.initialized:
        _service.initialize(context)
    if data is None:
        return None
    return _service.handle(data, context)
