\set s random(1, :streams)
SELECT (eventstore.last_event('account', 's' || :s)).stream_version;
