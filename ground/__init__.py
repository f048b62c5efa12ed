"""The ground every Pixglot package stands on, importing none of them: errors, where Pixglot keeps
its files, the database schema and its migrations, atomic writes, file paths that are not UTF-8,
the image policy, worker processes and the downloader."""
