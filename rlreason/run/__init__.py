"""What a run runs on: the Ray cluster and its actors (``cluster``, ``ray_connect``, ``placement``), signals and
stops (``interrupts``), atomic checkpoints (``checkpoint``) and run directories (``rundirs``). Drivers use these;
the stages never do."""
