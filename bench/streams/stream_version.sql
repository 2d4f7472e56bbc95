\set s random(1, :streams)
SELECT eventstore.stream_version('account', 's' || :s);
