"""The console's screens (number keys 1-5), their dialogs and the error screen."""
