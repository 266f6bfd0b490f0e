"""Recording episodes (`spec.recording`): what happened, step by step, as Parquet.

- `buffer.py`: the environment actor's side, one append per step into a chunk's buffer, handed
  back with the chunk (never a write on the step path);
- `tables.py`: the Parquet schema of the steps, episodes and observations tables;
- `recorder.py`: the coordinator's side, the chunks of each episode joined (a replayed chunk
  supersedes what it replays, so each step is recorded once) and written off the run thread
  once the episode is final;
- `replay.py`: `swarm-arena replay`, re-stepping the environment from the recorded actions.

docs/recording.md describes the tables and the commands.
"""
