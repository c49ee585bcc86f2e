"""Offline evaluation: STS and (later) retrieval, classification, clustering and the Wikipedia benchmark."""
