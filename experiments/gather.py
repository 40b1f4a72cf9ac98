"""Join the blocks of a sweep run as sweep.block=i/n (installed as `deltaprop-gather`).

    python experiments/train.py -m hydra/launcher=slurm trainer.num_seeds=16 \
        'sweep.lr=[0.1,0.3,1.0]' sweep.block=0/4,1/4,2/4,3/4
    python experiments/gather.py multirun/train/default/<time>     # → multirun/train/default/<time>/gathered

See deltaprop/run/gather.py. Exit codes: 0 done, 2 the blocks are not one whole sweep.
"""

from deltaprop.cli import gather

if __name__ == "__main__":
    gather()
