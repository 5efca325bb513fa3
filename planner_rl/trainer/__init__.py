"""Update backends: own the model's optimizer, schedule and precision, and its training checkpoints.

    trainer=torch      one process, AdamW, gradient clipping, autocast on GPU (planner_rl/trainer/torch.py)
    trainer=deepspeed  ZeRO stage 1/2/3 across ranks, under torchrun or the deepspeed launcher
                       (planner_rl/trainer/deepspeed.py)

The GRPO loop uses a backend through a few names only, so another one (DeepSpeed ZeRO) drops in by config:

    backend = cls(model, cfg, total_steps)   # cls from cfg._target_
    backend.model                            # what to call forward on (a wrapper is fine)
    backend.unwrapped                        # the plain transformers model (save_pretrained, weight sync)
    backend.device, backend.autocast()       # where batches go, and the forward's precision context
    backend.backward(loss)                   # accumulate gradients of one micro-batch
    backend.step() -> dict                   # clip, optimizer and schedule step, zero grads: train/grad_norm, train/lr
    backend.save(dir), backend.load(dir)     # model, optimizer and schedule state (the loop adds its own); collective
    backend.close()                          # tear down (process groups), in the loop's `finally`
"""
