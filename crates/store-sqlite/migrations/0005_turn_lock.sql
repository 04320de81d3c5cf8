-- One turn per conversation at a time: the holder of the conversation's turn and until when
-- (milliseconds). A turn takes it when the conversation is free (no holder, or an expired
-- one) and gives it back with its reply; a crashed holder's lock expires.
ALTER TABLE conversations ADD COLUMN turn_holder TEXT;
ALTER TABLE conversations ADD COLUMN turn_until INTEGER;
