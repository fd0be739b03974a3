-- model registry metadata (data window, split, versions, promotion) and score explanations
ALTER TABLE model_registry ADD COLUMN data_from DATE;
ALTER TABLE model_registry ADD COLUMN data_to DATE;
ALTER TABLE model_registry ADD COLUMN estimator VARCHAR;
ALTER TABLE model_registry ADD COLUMN train_vehicles VARCHAR[];
ALTER TABLE model_registry ADD COLUMN holdout_vehicles VARCHAR[];
ALTER TABLE model_registry ADD COLUMN package_versions JSON;
ALTER TABLE model_registry ADD COLUMN code_version VARCHAR;
ALTER TABLE model_registry ADD COLUMN promoted_at TIMESTAMPTZ;
ALTER TABLE model_registry ADD COLUMN promotion JSON;
ALTER TABLE scores ADD COLUMN explanation JSON;
