"""The archive-volume forecast: GB archived and GB saved per source over the next week and month (issue 18)."""
