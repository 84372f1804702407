"""The command layer: the only place that parses flags. One module per command (`eval`, `classify`, `fewshot`,
`tune-views`), the shared flag groups (`flags`) and the `calip3d` dispatcher (`main`). Each command parses and
validates its flags, builds typed configs and calls the library."""
