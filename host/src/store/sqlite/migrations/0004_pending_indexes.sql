-- Plugboard store, schema version 4: the "what is still pending" indexes hold only pending
-- rows. Every inbox row and event is inserted pending and done moments later; a full
-- (state, id) index rewrote an index entry at both moments and grew with history, so its
-- pages were cold. A partial index stays as small as the backlog: its few pages stay in
-- the cache and a batch touches one or two of them.
DROP INDEX inbox_state;
CREATE INDEX inbox_pending ON inbox (id) WHERE state = 'pending';
DROP INDEX events_state;
CREATE INDEX events_pending ON events (id) WHERE state = 'pending';
