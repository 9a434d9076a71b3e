-- A supplier's drop profile (`tidemark supplier profile set`): how its drops are written
-- (delimiter, encoding, decimal comma, column names, …), so a daily `tidemark load` needs no
-- flags. Kept as the YAML given, comments included, so `profile show` prints it back as it was
-- written; the loader checks it when it is set. NULL: the supplier sends tidemark's own drops.
ALTER TABLE suppliers
    ADD COLUMN drop_profile            text,
    ADD COLUMN drop_profile_updated_at timestamptz;
