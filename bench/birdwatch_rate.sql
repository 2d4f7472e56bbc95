-- bench/birdwatch_rate.sql: one birdwatch.rate call (a transaction of its
-- own) by a random watcher of bench_watchers, of a random seed image of
-- bench_images, rating 1..5.  Run by bench/run-birdwatch with
-- bench/birdwatch_tick.sql at weight 1:1, -D watchers=N -D images=M.
\set w random(1, :watchers)
\set i random(1, :images)
\set r random(1, 5)
SELECT birdwatch.rate(w.token, i.url, :r)
  FROM bench_watchers w, bench_images i WHERE w.n = :w AND i.n = :i;
