"""Teaching: the worked example of backprop, computed apart from its rendering."""
