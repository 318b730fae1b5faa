# Stage 3: train the classifier (a GPU job on a cluster), export it with its model card.

MODEL_DIR = f"{RESULTS}/model"
MODEL_CARD = f"{MODEL_DIR}/model_card.json"


rule train:
    """Fit with Lightning, keep best/last checkpoints (resumes from last), export and check."""
    input:
        DATASET_ARRAYS,
        manifest=DATASET_MANIFEST,
        config=f"{RESULTS}/configs/train.json",
    output:
        card=MODEL_CARD,
        torchscript=f"{MODEL_DIR}/model.ts",
        onnx=f"{MODEL_DIR}/model.onnx",
    log:
        f"{LOGS}/train.log",
    params:
        skyscan=SKYSCAN,
        dataset=lambda wc, input: os.path.dirname(input.manifest),
        out=lambda wc, output: os.path.dirname(output.card),
    threads: 8  # capped at --cores locally; set-threads in a profile
    resources:
        gpu=1 if config["train"]["accelerator"] != "cpu" else 0,
        mem_mb=8000,
        runtime=720,
    conda:
        # the CUDA build of PyTorch whenever the job may take a GPU (gpu=1 above)
        "../../envs/skyscan-cuda.yaml"
        if config["train"]["accelerator"] != "cpu"
        else "../../envs/skyscan-cpu.yaml"
    shell:
        "{params.skyscan} train --dataset {params.dataset} --out {params.out}"
        " --config {input.config} --threads {threads} > {log} 2>&1"
