-- the same page as read.sql without the read horizon
\set after random(0, :events - 100)
SELECT count(*) FROM bench_read_without_horizon('account', :after, 100);
