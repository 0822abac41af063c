-- Version 4 keeps both backends at one schema version. On PostgreSQL it drops
-- staging_links' primary key (hash joins read the table whole). SQLite keeps
-- it: without hash joins, its lookups into staging_links need that index.
SELECT 1;
