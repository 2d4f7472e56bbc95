-- the newest 10 events of a stream
\set s random(1, :streams)
SELECT count(*) FROM eventstore.read_stream('account', 's' || :s, max => 10, backward => true);
