"""Web Push delivery: VAPID, encryption, guarded HTTP sending, outcome handling."""
