-- an aggregate loaded as its snapshot and the events after it
\set s random(1, :streams)
SELECT s.version, count(e.position)
  FROM eventstore.load_snapshot('account', 's' || :s) s
  LEFT JOIN LATERAL eventstore.read_stream('account', 's' || :s, after_version => s.version) e ON true
 GROUP BY s.version;
