"""The words of seeded posts and of search queries: one vocabulary, so searches hit.

A module of its own, free of heavy imports: ``homefeed demo`` (no bench extra installed)
uses it through ``world.py``."""

from __future__ import annotations

#: Post texts are drawn from, and search queries pick, these words, so searches find posts.
WORDS: tuple[str, ...] = tuple(
    """
    time year people way day man thing woman life child world school state family student
    group country problem hand part place case week company system program question work
    government number night point home water room mother area money story fact month lot
    right study book eye job word business issue side kind head house service friend father
    power hour game line end member law car city community name president team minute idea
    kid body information back parent face others level office door health person art war
    history party result change morning reason research girl guy moment air teacher force
    education coffee music garden river mountain train bicycle weather summer winter spring
    autumn market bread cheese pizza movie concert football tennis election database cache
    timeline search index stream replica partition latency throughput follower celebrity
    """.split()
)
