-- One database per service (each service owns its tables, outbox, inbox and dead letters).
-- Run once by the postgres image on an empty data volume (/docker-entrypoint-initdb.d).
CREATE DATABASE sportello_anpr OWNER sportello;
CREATE DATABASE sportello_pagopa OWNER sportello;
CREATE DATABASE sportello_spid OWNER sportello;
CREATE DATABASE sportello_appio OWNER sportello;
