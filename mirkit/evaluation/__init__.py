"""Measuring a model: full-ranking metrics (`metrics`), the baselines every model stands
beside (`baselines`), the protocol that ranks a run's targets and slices them
(`protocol`, shared by training validation and `mirkit eval`), and the report files
(`report`)."""
