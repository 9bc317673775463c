"""The domain: rules that hold whatever stores the data. Imports no backend."""
