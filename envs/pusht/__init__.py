"""PushT (gym-pusht's T-pushing task) as a worldsim world: env, data policies, pose detector, planning goals."""
