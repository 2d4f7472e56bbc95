-- bench/birdwatch_tick.sql: one birdwatch.tick call (a transaction of its
-- own) by a random watcher of bench_watchers, of a new image (a unique URL).
-- Run by bench/run-birdwatch with bench/birdwatch_rate.sql at weight 1:1,
-- -D watchers=N.
\set w random(1, :watchers)
SELECT birdwatch.tick(w.token, 'https://birds.example.org/bench/' || gen_random_uuid() || '.jpg')
  FROM bench_watchers w WHERE w.n = :w;
