\set s random(1, :streams)
SELECT version FROM eventstore.load_snapshot('account', 's' || :s);
