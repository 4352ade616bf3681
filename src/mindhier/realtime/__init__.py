"""Real-time decoding: trials decoded while the scanner runs, and the live page that shows them."""
