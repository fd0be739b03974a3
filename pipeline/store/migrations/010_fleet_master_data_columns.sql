-- fleet master data as a DMS exports it: VIN and model year, customer language and contact consent, centre time zone, catalogue operation code and warranty
ALTER TABLE vehicles ADD COLUMN vin VARCHAR;
ALTER TABLE vehicles ADD COLUMN model_year INTEGER;
ALTER TABLE vehicles ADD COLUMN imported_at TIMESTAMPTZ;
ALTER TABLE customers ADD COLUMN language VARCHAR;
ALTER TABLE customers ADD COLUMN contact_consent BOOLEAN;
ALTER TABLE service_centres ADD COLUMN timezone VARCHAR;
ALTER TABLE service_catalogue ADD COLUMN operation_code VARCHAR;
ALTER TABLE service_catalogue ADD COLUMN warranty_months INTEGER;
