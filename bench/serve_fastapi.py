"""The Python peer of bench/compare_serving: FastAPI + uvicorn + torchvision serving the same model
and preprocessing as `finetune serve RUN_DIR`, the usual way (one forward pass per request, in
FastAPI's thread pool).

  python bench/serve_fastapi.py RUN_DIR --port 8091 --threads 2

It reads RUN_DIR/config.json (architecture mobilenet_v2, classes, preprocessing) and
RUN_DIR/model.safetensors into torchvision's mobilenet_v2 with the run's number of classes (strict
load). Preprocessing: PIL decode, RGB, Resize(resize_size, bilinear), CenterCrop(crop_size), ToTensor,
Normalize(mean, std): torchvision's ImageNet evaluation transform, which the run's config describes.
POST /v1/models/{name}:predict with a JPEG body answers {"predictions": [{"top_k": [...]}]}.
"""
import argparse
import io
import json
import os

import torch
import torchvision
import uvicorn
from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from PIL import Image
from safetensors.torch import load_file
from torchvision import transforms


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("run")
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = json.load(open(os.path.join(args.run, "config.json")))
    assert config["architecture"] == "mobilenet_v2", config["architecture"]
    classes = config["classNames"] if "classNames" in config else config["class_names"]
    p = config["preprocessing"]
    model = torchvision.models.mobilenet_v2(num_classes=len(classes))
    model.load_state_dict(load_file(os.path.join(args.run, "model.safetensors")), strict=True)
    model.eval()
    preprocess = transforms.Compose([
        transforms.Resize(p["resizeSize"], interpolation=transforms.InterpolationMode.BILINEAR),
        transforms.CenterCrop(p["cropSize"]), transforms.ToTensor(), transforms.Normalize(p["mean"], p["std"])])
    app = FastAPI()

    @app.post("/v1/models/{name}:predict")
    async def predict(name: str, request: Request, top_k: int = 5):
        return await run_in_threadpool(infer, await request.body(), top_k)

    def infer(data, top_k):
        image = Image.open(io.BytesIO(data)).convert("RGB")
        with torch.inference_mode():
            probabilities = torch.softmax(model(preprocess(image).unsqueeze(0)), dim=1)[0]
        values, indices = probabilities.topk(min(top_k, len(classes)))
        return {"predictions": [{"top_k": [{"class": classes[i], "index": int(i), "probability": float(v)}
                                           for v, i in zip(values.tolist(), indices.tolist())]}]}

    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
