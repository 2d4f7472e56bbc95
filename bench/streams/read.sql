-- a page of 100 events of the topic after a random position, up to the read horizon
\set after random(0, :events - 100)
SELECT count(*) FROM eventstore.read('account', :after, 100);
