"""Brands as data: one deployment running the pipeline for many Swap stores and Klaviyo accounts.

``brands.yml`` lists the brands; ``swap-brands`` runs, removes and summarises them; the Dagster
code location in ``orchestration/`` schedules them; the webhook receiver routes each store's
deliveries to its brand.
"""
