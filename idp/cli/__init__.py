"""The ``idp`` command line, for admins: serve, database, keys, clients, users, audit (:mod:`.main`)."""
