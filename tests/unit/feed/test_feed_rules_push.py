def test_proto(world):
    ana, bob = world.users("ana", "bob")
    world.follow(bob, ana)
    assert world.home(bob) == []
    p = world.post(ana)
    world.deliver()
    assert world.home(bob) == [p]
