-- each registered model records the telemetry signals it reads (required and optional)
-- Scoring skips a vehicle that sent no reading of one of the model's required signals in the
-- scoring window; optional signals only feed features the model imputes. Models registered
-- before this migration keep NULL here: their inputs are derived from their `features` with
-- the code's current declaration (pipeline/features/inputs.py).
ALTER TABLE model_registry ADD COLUMN required_signals VARCHAR[];
ALTER TABLE model_registry ADD COLUMN optional_signals VARCHAR[];
