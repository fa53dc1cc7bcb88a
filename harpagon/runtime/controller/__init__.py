"""The controller: plans against the live inventory, assigns tuples to workers, pushes diffs."""
