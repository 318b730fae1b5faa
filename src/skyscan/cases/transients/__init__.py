"""Real/bogus classification of difference-image detections (transients): the simulator."""
