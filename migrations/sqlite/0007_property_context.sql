-- Properties (--property NAME=JSONPATH) are evaluated again by the worker once the source is
-- probed. What only the upload request knew, the JWT claims and the request facts (country,
-- user agent family, sniffed content type), is kept here as JSON for that evaluation; NULL
-- when the server declares no property.
ALTER TABLE videos ADD COLUMN property_context_json TEXT;
