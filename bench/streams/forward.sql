-- the whole stream, forward: what an aggregate costs without the functions below
\set s random(1, :streams)
SELECT count(*) FROM eventstore.read_stream('account', 's' || :s);
