"""Model objects written back as text in a tool's own syntax (nft rules: :mod:`.nfttext`).

Pure code between ``parse`` and ``engine``: it may import model and parse; engine, render
and the layers above may import it. The parsers never do.
"""
