"""Risk adjustment (SPEC §10): CMS-HCC scores per member and payment year, Da Vinci RA coding gaps."""
