"""The trainer (like open_clip_train beside open_clip): it imports the `mirkit` library;
the library never imports it."""
