"""sentlab's configs, inside the package so that an installed wheel carries them: Hydra reads them as
pkg://sentlab.conf (sentlab.train), and a project of your own adds its config folder beside them."""
