"""Attribution rosters: client-managed Da Vinci ATR Groups with cohort decisions per member (SPEC §11)."""
